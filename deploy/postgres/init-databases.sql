-- Runs once, when the postgres container starts with an empty data volume.
-- One database per service (see <NAME>_DATABASE_URL in docker-compose.yml).
-- After changing this file, recreate the volume: `docker compose down -v`.
-- Text sorted by the C collation, as shared/db.py create_database says why.
CREATE DATABASE registration TEMPLATE template0 LC_COLLATE 'C';
CREATE DATABASE matching TEMPLATE template0 LC_COLLATE 'C';
CREATE DATABASE scheduling TEMPLATE template0 LC_COLLATE 'C';
CREATE DATABASE notification TEMPLATE template0 LC_COLLATE 'C';
CREATE DATABASE reporting TEMPLATE template0 LC_COLLATE 'C';
