-- Scheduling's own view of each event's grid and its participants' constraints.

CREATE TABLE IF NOT EXISTS event_grids (
    event_id     text PRIMARY KEY,
    time_zone    text NOT NULL,
    days         jsonb NOT NULL,
    sessions     jsonb NOT NULL,
    slot_minutes integer NOT NULL,
    tables       integer NOT NULL
);

CREATE TABLE IF NOT EXISTS attendees (
    registration_id text PRIMARY KEY,
    event_id        text NOT NULL,
    attendance      text NOT NULL,
    availability    jsonb NOT NULL,
    approved        boolean NOT NULL DEFAULT false
);
