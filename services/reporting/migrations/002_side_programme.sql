-- Side programme items (guided tours, ...) and how many joined each.
CREATE TABLE IF NOT EXISTS side_programme (
    item_id       text PRIMARY KEY,
    event_id      text NOT NULL,
    title         text NOT NULL,
    kind          text NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    participants  text[] NOT NULL DEFAULT '{}'
);
