-- An outbox row may publish several events of this database's event store, in order:
-- `events` holds their ids (`event_id` is the first's, `envelope` NULL). A writer that
-- stores hundreds of events in one statement (notification's delivery queue: an event
-- per delivery) writes one outbox row for them instead of one each, and the relay marks
-- one row. NULL: the row publishes its one event, as before.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS events uuid[];
