-- What the organiser dashboard needs beyond the report.

-- The event's slot grid, from BrokerageEventCreated (NULL for events projected before
-- this migration: the dashboard then shows the slots and tables that have meetings).
ALTER TABLE brokerage_events ADD COLUMN IF NOT EXISTS sessions jsonb;
ALTER TABLE brokerage_events ADD COLUMN IF NOT EXISTS slot_minutes integer;
ALTER TABLE brokerage_events ADD COLUMN IF NOT EXISTS tables integer;

-- How each delivery ended (NotificationSent / NotificationFailed on notification.events):
-- one row per delivery, so a repeated event changes nothing.
CREATE TABLE IF NOT EXISTS notification_outcomes (
    delivery_id  text PRIMARY KEY,
    event_id     text NOT NULL,
    channel      text NOT NULL,
    kind         text NOT NULL,
    outcome      text NOT NULL   -- sent | failed
);
CREATE INDEX IF NOT EXISTS notification_outcomes_event ON notification_outcomes (event_id);

-- Messages the services' inboxes gave up on (`<topic>.dlq`), read by reporting's own
-- consumer; one row per dead-letter record. `record_key` is the original record's key:
-- the brokerage event's id for nearly every event (platform-wide otherwise).
CREATE TABLE IF NOT EXISTS dead_letters (
    topic             text NOT NULL,
    partition         integer NOT NULL,
    "offset"          bigint NOT NULL,
    record_key        text,
    original_topic    text,
    consumer          text,
    error_type        text,
    error             text,
    event_type        text,
    dead_lettered_at  timestamptz NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE INDEX IF NOT EXISTS dead_letters_key ON dead_letters (record_key, dead_lettered_at);
