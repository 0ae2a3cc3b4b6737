-- The profile fields each participant publishes in the directory (NULL: all).
ALTER TABLE participants ADD COLUMN IF NOT EXISTS published text[];
