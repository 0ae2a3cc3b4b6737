-- The event's co-organisers (EEN support offices), learnt from registration.events:
-- each is told when a participant of its office registers, at its own address.
CREATE TABLE IF NOT EXISTS co_organisers (
    co_organiser_id  text PRIMARY KEY,
    event_id         text NOT NULL,
    office_id        text NOT NULL,
    name             text NOT NULL,
    email            text,
    removed          boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS co_organisers_office ON co_organisers (event_id, office_id);
