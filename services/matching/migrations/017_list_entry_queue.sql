-- Participants whose decision (approved, rejected, waitlisted, withdrawn) their event's
-- lists have not followed yet. The registration subscription only queues them here, in
-- its transaction; the recommendations worker (recommendations.worker) takes an event's
-- rows under that event's lock and brings the lists in line with each participant's
-- status as the projection holds it then (handlers.enter_queued): an approval costs the
-- consumer one row, not a ranking of the whole event, and a burst one round.
CREATE TABLE IF NOT EXISTS list_entry_queue (
    registration_id text PRIMARY KEY,
    event_id        text NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS list_entry_queue_by_event ON list_entry_queue (event_id);

-- Wakes the worker on the lists' channel (shared/sql/007_notify_trigger.sql).
DROP TRIGGER IF EXISTS list_entry_queue_notify ON list_entry_queue;
CREATE TRIGGER list_entry_queue_notify AFTER INSERT ON list_entry_queue
    FOR EACH STATEMENT EXECUTE FUNCTION notify_channel('list_refresh_queue');
