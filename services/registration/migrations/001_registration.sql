-- Registration's projections, updated in the same transaction as its events.

CREATE TABLE IF NOT EXISTS organisers (
    organiser_id text PRIMARY KEY,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS brokerage_events (
    event_id     text PRIMARY KEY,
    organiser_id text NOT NULL,
    definition   jsonb NOT NULL,   -- the BrokerageEventCreated payload
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS registrations (
    registration_id   text PRIMARY KEY,
    event_id          text NOT NULL REFERENCES brokerage_events (event_id),
    organisation_type text NOT NULL,
    name              text NOT NULL,
    country           text NOT NULL,
    sectors           text[] NOT NULL,
    attendance        text NOT NULL,
    status            text NOT NULL,
    status_reason     text,
    profile           jsonb NOT NULL,  -- representatives stay sealed in here
    erased            boolean NOT NULL DEFAULT false,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS registrations_by_event ON registrations (event_id, status);

-- One live registration per organisation (name and country) and event.
CREATE UNIQUE INDEX IF NOT EXISTS registrations_one_per_organisation
    ON registrations (event_id, lower(name), country) WHERE status <> 'withdrawn';

-- Keys sealing each registration's personal data; erasure deletes the row.
CREATE TABLE IF NOT EXISTS subject_keys (
    subject_id text PRIMARY KEY,
    key        bytea NOT NULL
);
