-- The index signing in by e-mail looks addresses up in (services/registration/addresses.py):
-- an HMAC of each representative's normalised address, keyed with the server's sign-in
-- secret, never the address. A projection of the registration events (the address is
-- opened with the registration's key as they are applied), rebuilt with the others;
-- erasure deletes a registration's rows together with its key.
CREATE TABLE IF NOT EXISTS registration_addresses (
    registration_id text NOT NULL,
    address_digest  text NOT NULL,
    PRIMARY KEY (registration_id, address_digest)
);
CREATE INDEX IF NOT EXISTS registration_addresses_by_digest
    ON registration_addresses (address_digest);
