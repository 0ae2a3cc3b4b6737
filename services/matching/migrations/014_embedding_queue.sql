-- Sentence vectors are computed off the consumer's path (recommendations.embedding):
-- the consumer's transaction only queues the participant here, and the embedding
-- worker picks due rows, embeds their current requests and offers in one model
-- call outside any transaction, stores the vectors and updates the lists.
-- A row means "the vectors of this participant's current texts are not stored yet";
-- it is deleted with the same `generation` it was read with, so a profile change
-- that lands while the model runs (generation + 1) is embedded again.
CREATE TABLE IF NOT EXISTS embedding_queue (
    registration_id text PRIMARY KEY,
    event_id        text NOT NULL,
    generation      bigint NOT NULL DEFAULT 1,
    queued_at       timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    not_before      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS embedding_queue_due ON embedding_queue (not_before, queued_at);

-- Wake the worker when work is queued (delivered at commit; one per transaction).
CREATE OR REPLACE FUNCTION embedding_queue_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('embedding_queue', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS embedding_queue_notify ON embedding_queue;
CREATE TRIGGER embedding_queue_notify AFTER INSERT OR UPDATE ON embedding_queue
    FOR EACH STATEMENT EXECUTE FUNCTION embedding_queue_notify();

-- When the vectors were stored (the bench measures registration -> vectors landed).
ALTER TABLE participant_vectors
    ADD COLUMN IF NOT EXISTS embedded_at timestamptz NOT NULL DEFAULT now();
