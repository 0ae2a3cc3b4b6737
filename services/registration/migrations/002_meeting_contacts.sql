-- Accepted meetings, learnt from matching.events: an organisation may read the
-- contact details of those it has an accepted meeting with. A cancelled
-- meeting's row is deleted.
CREATE TABLE IF NOT EXISTS meeting_contacts (
    request_id   text PRIMARY KEY,   -- matching's meeting request id
    event_id     text NOT NULL,
    first_id     text NOT NULL,      -- the two registrations, in either order
    second_id    text NOT NULL,
    accepted_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS meeting_contacts_by_first ON meeting_contacts (first_id, second_id);
CREATE INDEX IF NOT EXISTS meeting_contacts_by_second ON meeting_contacts (second_id, first_id);
