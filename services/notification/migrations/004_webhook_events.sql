-- Webhook endpoints become a projection of their events (`webhook-<endpoint id>`,
-- services/notification/endpoints.py): URL and secret sealed together with a key per
-- endpoint (`webhook_keys`, not a projection: removal deletes it, shredding every copy).
-- The endpoints of before (URL and secret in clear) wait in `webhook_endpoints_legacy`
-- until the service starts: it records them as events and drops that table
-- (`commands.upgrade_legacy_webhooks`).
ALTER TABLE webhook_endpoints RENAME TO webhook_endpoints_legacy;
DROP INDEX IF EXISTS webhook_endpoints_by_event;

CREATE TABLE webhook_endpoints (
    endpoint_id  uuid PRIMARY KEY,
    event_id     text NOT NULL,
    kinds        text[] NOT NULL,
    sealed       text NOT NULL,         -- {"url", "secret"} sealed with the endpoint's key
    created_by   text NOT NULL,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL   -- when it was registered (the event's)
);

CREATE INDEX webhook_endpoints_by_event ON webhook_endpoints (event_id) WHERE active;

CREATE TABLE webhook_keys (
    endpoint_id  uuid PRIMARY KEY,
    key          bytea NOT NULL
);
