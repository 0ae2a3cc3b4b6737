-- Matching's own view of who takes part, learnt from registration.events.

CREATE TABLE IF NOT EXISTS brokerage_events (
    event_id      text PRIMARY KEY,
    name          text NOT NULL,
    meeting_types text[] NOT NULL,
    max_meetings_per_participant integer,
    request_expiry_hours integer NOT NULL
);

CREATE TABLE IF NOT EXISTS participants (
    registration_id   text PRIMARY KEY,
    event_id          text NOT NULL,
    organisation_type text NOT NULL,
    name              text NOT NULL,
    country           text NOT NULL,
    sectors           text[] NOT NULL,
    technologies      text[] NOT NULL,
    value_chain_position text,
    markets           text[] NOT NULL,
    offers            text[] NOT NULL,
    requests          text[] NOT NULL,
    attendance        text NOT NULL,
    status            text NOT NULL
);

CREATE INDEX IF NOT EXISTS participants_by_event ON participants (event_id, status);
