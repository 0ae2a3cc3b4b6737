-- A command that decided on a stream's state it kept from an earlier read (registration
-- keeps each brokerage event's settings with their version) checks, in the statement
-- that records its decision, that the stream has had no event since: one statement
-- instead of a read and a write. Raises SQLSTATE EV001 (shared.eventstore.StreamMoved)
-- when it has, which fails the whole statement: nothing is written, and the command
-- reads the stream and decides again.
CREATE OR REPLACE FUNCTION stream_still_at(stream text, known integer) RETURNS boolean AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM events e WHERE e.stream_id = stream AND e.version > known) THEN
        RAISE EXCEPTION 'stream % has events after version %', stream, known
            USING ERRCODE = 'EV001';
    END IF;
    RETURN true;
END;
$$ LANGUAGE plpgsql;
