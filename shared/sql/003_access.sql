-- The access projection every service keeps from registration's events
-- (shared/access/projection.py): which organiser leads an event, its co-organisers
-- and their support offices, and each registration's status and support office.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS revoked boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS access_events (
    event_id      text PRIMARY KEY,
    organiser_id  text NOT NULL
);

CREATE TABLE IF NOT EXISTS access_co_organisers (
    co_organiser_id  text PRIMARY KEY,
    event_id         text NOT NULL,
    office_id        text NOT NULL,
    removed          boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS access_co_organisers_event ON access_co_organisers (event_id);

CREATE TABLE IF NOT EXISTS access_registrations (
    registration_id  text PRIMARY KEY,
    event_id         text NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    office_id        text
);
CREATE INDEX IF NOT EXISTS access_registrations_event ON access_registrations (event_id, office_id);
