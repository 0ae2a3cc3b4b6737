-- Time windows per meeting type (e.g. Business2Cluster meetings only in the afternoon).

-- The meeting type matching accepted the meeting as (null for meetings from before).
ALTER TABLE meetings ADD COLUMN IF NOT EXISTS meeting_type text;

-- The organiser's rules as a log of changes (each one an event, never updated): the latest
-- per event and meeting type is in force; allowed_slots null means any slot again.
CREATE TABLE IF NOT EXISTS slot_rule_changes (
    seq           bigserial PRIMARY KEY,
    event_id      text NOT NULL,
    meeting_type  text NOT NULL,
    allowed_slots jsonb,                   -- slot ids of the event's grid, or null
    set_by        text NOT NULL,           -- the organiser's (or the admin's) id
    set_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS slot_rule_changes_latest
    ON slot_rule_changes (event_id, meeting_type, seq DESC);
