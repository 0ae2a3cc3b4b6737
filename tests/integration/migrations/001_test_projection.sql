-- A small projection the integration tests' handlers write to.
CREATE TABLE IF NOT EXISTS test_projection (
    key        text    PRIMARY KEY,
    count      integer NOT NULL DEFAULT 0,
    last_event text
);
