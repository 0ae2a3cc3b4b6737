-- An outbox row may leave its envelope out when the event it publishes is in this
-- database's event store: the relay then reads the envelope from there (the event's
-- metadata with its payload, `shared.outbox.MARK_AND_READ`). A writer of many events at
-- once (notification's delivery queue: one event per delivery) writes each payload
-- once instead of twice. Rows with an envelope are read as before.
ALTER TABLE outbox ALTER COLUMN envelope DROP NOT NULL;
