-- One trigger function for "wake the worker of this table": AFTER ... FOR EACH
-- STATEMENT EXECUTE FUNCTION notify_channel('<channel>') sends an empty NOTIFY on the
-- channel named by the trigger's argument (delivered at commit; folded to one per
-- transaction). Tables from before it keep their own functions.
CREATE OR REPLACE FUNCTION notify_channel() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
