-- Every event of the platform as reporting received it (the four topics) or wrote it
-- (its own commands): the readable history of an event and of a registration.
CREATE TABLE IF NOT EXISTS history (
    seq              bigserial PRIMARY KEY,
    envelope_id      text NOT NULL UNIQUE,
    event_id         text NOT NULL,      -- the record key: the brokerage event
    registration_ids text[] NOT NULL,    -- the registrations the event concerns
    type             text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    actor            text,
    correlation_id   text,
    causation_id     text,
    subject          text,
    data             jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_event ON history (event_id, occurred_at, seq);
CREATE INDEX IF NOT EXISTS history_by_registration ON history USING gin (registration_ids);
