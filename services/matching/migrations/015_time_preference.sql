-- The requester's time preference (JSON of shared.contracts.matching.TimePreference), or null.
ALTER TABLE meeting_requests ADD COLUMN IF NOT EXISTS time_preference text;
