-- Runs once, when the postgres container starts with an empty data volume.
-- One database per service (see <NAME>_DATABASE_URL in docker-compose.yml).
-- After changing this file, recreate the volume: `docker compose down -v`.
CREATE DATABASE registration;
CREATE DATABASE matching;
CREATE DATABASE scheduling;
CREATE DATABASE notification;
CREATE DATABASE reporting;
