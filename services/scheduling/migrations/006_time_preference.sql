-- The requester's time preference as matching accepted the meeting with it (JSON of
-- shared.contracts.matching.TimePreference), or null: none, or a meeting from before.
ALTER TABLE meetings ADD COLUMN IF NOT EXISTS time_preference text;
