-- When an event's lists last changed: a starting process preloads the
-- participants of the events changed most recently (recommendations.warm_up).
ALTER TABLE recommendation_state
    ADD COLUMN IF NOT EXISTS changed_at timestamptz NOT NULL DEFAULT now();
