-- Rounds of feedback invitations (FeedbackInvitationsRequested, this service's own event),
-- projected in the command's transaction; `round` counts from 1 per brokerage event.
CREATE TABLE IF NOT EXISTS feedback_rounds (
    round_id      text PRIMARY KEY,
    event_id      text NOT NULL,
    round         integer NOT NULL,
    requested_by  text NOT NULL,
    participants  integer NOT NULL,   -- how many were invited
    meetings      integer NOT NULL,   -- how many distinct meetings they were asked to rate
    requested_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, round)
);
