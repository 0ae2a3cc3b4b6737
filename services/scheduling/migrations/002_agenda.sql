-- The agenda: each event's organiser and cap, publication, and its meetings' places.

ALTER TABLE event_grids ADD COLUMN IF NOT EXISTS organiser_id text;
ALTER TABLE event_grids ADD COLUMN IF NOT EXISTS max_meetings integer;
ALTER TABLE event_grids ADD COLUMN IF NOT EXISTS published_at timestamptz;

CREATE INDEX IF NOT EXISTS attendees_by_event ON attendees (event_id);

-- One row per accepted meeting (meeting_id = matching's request_id).
-- status: pending (the event's grid is not known yet), placed, unscheduled, cancelled.
CREATE TABLE IF NOT EXISTS meetings (
    meeting_id   text PRIMARY KEY,
    event_id     text NOT NULL,
    participants text[] NOT NULL,          -- registration ids, requester first
    mode         text NOT NULL,            -- onsite | online
    status       text NOT NULL,
    slot_id      text,
    slot_start   timestamptz,
    slot_end     timestamptz,
    table_no     integer,
    locked       boolean NOT NULL DEFAULT false,
    reason       text,                     -- why unscheduled (or released)
    accepted_at  timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (status IN ('pending', 'placed', 'unscheduled', 'cancelled')),
    CHECK ((status = 'placed') = (slot_id IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS meetings_by_event ON meetings (event_id, status);
CREATE INDEX IF NOT EXISTS meetings_by_participant ON meetings USING gin (participants);

-- A last line of defence under the per-event lock: one meeting per table and slot
-- (checked at commit, so a re-optimisation may swap tables within its transaction).
ALTER TABLE meetings DROP CONSTRAINT IF EXISTS meetings_one_per_table;
ALTER TABLE meetings ADD CONSTRAINT meetings_one_per_table
    EXCLUDE USING btree (event_id WITH =, slot_id WITH =, table_no WITH =)
    WHERE (status = 'placed' AND table_no IS NOT NULL) DEFERRABLE INITIALLY DEFERRED;
