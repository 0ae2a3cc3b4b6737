-- Sign-in links by e-mail (services/registration/sign_in.py).

-- The links issued, from SignInLinkRequested and SignedInByLink: what notification asks
-- for to write the message, and whether a link was used. The address stays sealed.
CREATE TABLE IF NOT EXISTS sign_in_links (
    link_id            text PRIMARY KEY,
    registration_id    text NOT NULL,
    event_id           text NOT NULL,
    address_encrypted  text NOT NULL,
    issued_at          timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    used_at            timestamptz
);

-- Requests per address (an HMAC of it, not the address) in the rate limit's window;
-- older rows are deleted as new requests come. Not a projection: it counts requests for
-- any address, registered or not, and no event records them.
CREATE TABLE IF NOT EXISTS sign_in_requests (
    address_digest  text NOT NULL,
    requested_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sign_in_requests_by_address
    ON sign_in_requests (address_digest, requested_at);
