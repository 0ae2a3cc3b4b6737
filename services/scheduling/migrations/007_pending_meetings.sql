-- The meetings still waiting for a place, per event: a burst of registrations asks
-- whether its events have any (`bursts.registrations`). Small at all times (placement
-- follows an accept within a batch), so the question costs a look into a few pages,
-- whatever the statistics say of the whole table; the composite index served it on
-- most plans, but its entries of meetings placed since (dead until vacuum) and stale
-- statistics made some calls scan (25 ms on average over a bremen run).
CREATE INDEX IF NOT EXISTS meetings_pending ON meetings (event_id) WHERE status = 'pending';
