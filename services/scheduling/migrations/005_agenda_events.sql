-- The agenda is a projection of scheduling's own events (and of those it consumes):
-- publication gets a table of its own (an AgendaPublished may be replayed before the
-- BrokerageEventCreated that makes the grid), the existing publications move there.

CREATE TABLE IF NOT EXISTS agenda_publications (
    event_id     text PRIMARY KEY,
    published_at timestamptz NOT NULL
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()
               AND table_name = 'event_grids' AND column_name = 'published_at') THEN
        INSERT INTO agenda_publications (event_id, published_at)
            SELECT event_id, published_at FROM event_grids WHERE published_at IS NOT NULL
            ON CONFLICT (event_id) DO NOTHING;
        ALTER TABLE event_grids DROP COLUMN published_at;
    END IF;
END $$;
