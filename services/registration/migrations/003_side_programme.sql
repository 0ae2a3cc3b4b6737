-- Side programme items (guided tours, ...) and who joined them.
CREATE TABLE IF NOT EXISTS side_programme (
    item_id       text PRIMARY KEY,
    event_id      text NOT NULL,
    title         text NOT NULL,
    kind          text NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    capacity      integer,
    participants  text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS side_programme_event ON side_programme (event_id);
