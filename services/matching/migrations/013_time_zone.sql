-- The event's time zone, for the meeting requests' export (times in the event's zone).
ALTER TABLE brokerage_events ADD COLUMN IF NOT EXISTS time_zone text;
