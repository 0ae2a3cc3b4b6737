-- Each registration's organisation name, so every service can name participants in its
-- exports (agendas, table plans) without a projection of its own. A distinct column name:
-- services join access_registrations with tables of their own that have a `name`.
ALTER TABLE access_registrations ADD COLUMN IF NOT EXISTS organisation_name text;
