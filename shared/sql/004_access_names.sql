-- Each registration's organisation name, so every service can name participants in its
-- exports (agendas, table plans) without a projection of its own.
ALTER TABLE access_registrations ADD COLUMN IF NOT EXISTS name text;
