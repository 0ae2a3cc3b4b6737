-- Notification's own view of whom it may write to, learnt from registration.events.
-- Contact details stay sealed; erasure is recorded so nothing is sent afterwards.

CREATE TABLE IF NOT EXISTS recipients (
    registration_id           text PRIMARY KEY,
    event_id                  text NOT NULL,
    name                      text NOT NULL,
    status                    text NOT NULL,
    representatives_encrypted text NOT NULL,
    erased                    boolean NOT NULL DEFAULT false
);
