-- Reporting's projections. Each table is fed by one topic, so events of different
-- topics may arrive in any order: the report joins them when it is read.

CREATE TABLE IF NOT EXISTS brokerage_events (
    event_id      text PRIMARY KEY,
    organiser_id  text NOT NULL,
    name          text NOT NULL,
    venue         text NOT NULL,
    time_zone     text NOT NULL,
    days          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS registrations (
    registration_id    text PRIMARY KEY,
    event_id           text NOT NULL,
    organisation_type  text NOT NULL,
    name               text NOT NULL,
    country            text NOT NULL,
    sectors            text[] NOT NULL,
    attendance         text NOT NULL,   -- on_site | remote
    status             text NOT NULL DEFAULT 'pending'
);
CREATE INDEX IF NOT EXISTS registrations_event ON registrations (event_id);

-- Meetings agreed in matching (MeetingAccepted), cancelled or not.
CREATE TABLE IF NOT EXISTS meetings (
    meeting_id    text PRIMARY KEY,
    event_id      text NOT NULL,
    meeting_type  text NOT NULL,
    mode          text NOT NULL,
    participants  text[] NOT NULL,
    cancelled     boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS meetings_event ON meetings (event_id);

-- Where scheduling put each meeting (SlotAssigned / SlotReleased).
CREATE TABLE IF NOT EXISTS placements (
    meeting_id  text PRIMARY KEY,
    event_id    text NOT NULL,
    placed      boolean NOT NULL,
    slot_start  timestamptz,
    slot_end    timestamptz,
    table_no    integer,
    mode        text
);

-- Requests made (for the funnel), from MeetingRequested.
CREATE TABLE IF NOT EXISTS requests (
    request_id    text PRIMARY KEY,
    event_id      text NOT NULL,
    meeting_type  text NOT NULL
);

-- This service's own events (reporting.events), projected in the command's transaction.
CREATE TABLE IF NOT EXISTS attendance (
    event_id         text NOT NULL,
    registration_id  text NOT NULL,
    attended         boolean NOT NULL,
    PRIMARY KEY (event_id, registration_id)
);

CREATE TABLE IF NOT EXISTS not_held (
    meeting_id  text PRIMARY KEY,
    event_id    text NOT NULL,
    reason      text
);

CREATE TABLE IF NOT EXISTS feedback (
    meeting_id       text NOT NULL,
    registration_id  text NOT NULL,
    event_id         text NOT NULL,
    rating           text NOT NULL,
    comment          text,
    PRIMARY KEY (meeting_id, registration_id)
);

CREATE TABLE IF NOT EXISTS outcomes (
    meeting_id       text NOT NULL,
    registration_id  text NOT NULL,
    event_id         text NOT NULL,
    outcome          text NOT NULL,
    kind             text,
    note             text,
    PRIMARY KEY (meeting_id, registration_id)
);
