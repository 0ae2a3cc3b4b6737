-- Participants whose recommendation lists a meeting request changed (made, accepted,
-- declined, cancelled, expired), waiting to be computed anew. The pair subscription on
-- matching.events only queues them here, in its transaction; the recommendations
-- worker (recommendations.worker) takes an event's rows under that event's lock and
-- recomputes their lists, so a burst of requests costs one computation per round,
-- not one per consumer batch, and the consumer's commit does not wait for it. Reads
-- leave out pending and accepted pairs meanwhile, so a list never shows one.
CREATE TABLE IF NOT EXISTS list_refresh_queue (
    registration_id text PRIMARY KEY,
    event_id        text NOT NULL,
    queued_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS list_refresh_queue_by_event ON list_refresh_queue (event_id);

-- Wake the worker when lists are queued (shared/sql/007_notify_trigger.sql).
DROP TRIGGER IF EXISTS list_refresh_queue_notify ON list_refresh_queue;
CREATE TRIGGER list_refresh_queue_notify AFTER INSERT ON list_refresh_queue
    FOR EACH STATEMENT EXECUTE FUNCTION notify_channel('list_refresh_queue');
