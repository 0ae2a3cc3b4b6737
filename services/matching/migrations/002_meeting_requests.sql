-- Who organises each event (for organisers' keys), and matching's own meeting requests.

ALTER TABLE brokerage_events ADD COLUMN IF NOT EXISTS organiser_id text;

-- The read model of the meeting-request streams, updated in the transaction
-- that appends each event. The recommendation engine reads it too, to leave
-- out partners already requested or met.
CREATE TABLE IF NOT EXISTS meeting_requests (
    request_id   text PRIMARY KEY,
    event_id     text NOT NULL,
    requester_id text NOT NULL,
    recipient_id text NOT NULL,
    status       text NOT NULL
        CHECK (status IN ('pending', 'accepted', 'declined', 'cancelled', 'expired')),
    meeting_type text NOT NULL,
    message      text,
    mode         text,          -- onsite | online, once accepted
    arranged_by_organiser boolean NOT NULL DEFAULT false,
    mutual       boolean NOT NULL DEFAULT false,
    decided_by   text,          -- who accepted, declined or cancelled
    reason       text,          -- of a decline or cancellation
    expires_at   timestamptz,   -- pending requests expire then; NULL when arranged
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (requester_id <> recipient_id)
);

CREATE INDEX IF NOT EXISTS meeting_requests_by_event ON meeting_requests (event_id, status);
CREATE INDEX IF NOT EXISTS meeting_requests_by_requester ON meeting_requests (requester_id, status);
CREATE INDEX IF NOT EXISTS meeting_requests_by_recipient ON meeting_requests (recipient_id, status);

-- What the expiry sweeper scans.
CREATE INDEX IF NOT EXISTS meeting_requests_due ON meeting_requests (expires_at)
    WHERE status = 'pending';

-- At most one open request or meeting per pair, whichever way it was asked (a
-- backstop: the handlers serialise per participant and refuse duplicates first).
CREATE UNIQUE INDEX IF NOT EXISTS meeting_requests_one_open_per_pair ON meeting_requests
    (event_id, least(requester_id, recipient_id), greatest(requester_id, recipient_id))
    WHERE status IN ('pending', 'accepted');
