-- Co-organisers (support offices' keys) per event, for the lead organiser's list.
CREATE TABLE IF NOT EXISTS co_organisers (
    co_organiser_id text PRIMARY KEY,
    event_id        text NOT NULL REFERENCES brokerage_events (event_id),
    office_id       text NOT NULL,
    name            text NOT NULL,
    email           text,
    added_at        timestamptz NOT NULL DEFAULT now(),
    removed_at      timestamptz
);
CREATE INDEX IF NOT EXISTS co_organisers_by_event ON co_organisers (event_id);
