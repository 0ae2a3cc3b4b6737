-- Urgent deliveries (calendar updates, reminders, sign-in links: `domain.urgent`) are
-- claimed before the rest of a backlog. Rows queued before this migration keep false:
-- they are sent in their old order, and the rule stays in the domain, not here.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS urgent boolean NOT NULL DEFAULT false;

DROP INDEX IF EXISTS deliveries_due;
CREATE INDEX deliveries_due ON deliveries (urgent DESC, next_attempt_at) WHERE status = 'pending';
