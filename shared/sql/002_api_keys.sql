-- API keys every service recognises: issued by registration, learnt from its events.
CREATE TABLE IF NOT EXISTS api_keys (
    key_digest  text PRIMARY KEY,
    role        text NOT NULL,   -- organiser | organisation
    subject_id  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
