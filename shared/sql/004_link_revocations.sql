-- Signed links (shared/links.py) of a (purpose, subject) issued before `revoked_before`
-- are void: revoking a dashboard link voids every dashboard link of the event, revoking
-- a participant's links voids its calendar-feed and unsubscribe links.
CREATE TABLE IF NOT EXISTS link_revocations (
    purpose         text NOT NULL,
    subject         text NOT NULL,
    revoked_before  timestamptz NOT NULL,
    PRIMARY KEY (purpose, subject)
);
