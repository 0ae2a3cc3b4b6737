-- Keys that stop working by themselves: a browser's key from a sign-in link
-- (SignedInByLink) lasts as long as the portal's session. NULL: no expiry.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz;
