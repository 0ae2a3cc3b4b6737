-- Each queued row counts how often it was queued (the worker's queues, migrations 016
-- and 017). The worker reads an event's rows without taking them and, at the end of the
-- round's transaction, deletes those still at the generation it read: a row queued
-- again meanwhile (a newer generation) stays for the next round. So the consumers'
-- inserts no longer wait for a whole round (the ranking of the event) on a row the
-- round had deleted at its start, only for the round's commit.
ALTER TABLE list_entry_queue ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 0;
ALTER TABLE list_refresh_queue ADD COLUMN IF NOT EXISTS generation bigint NOT NULL DEFAULT 0;
