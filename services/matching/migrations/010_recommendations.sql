-- Recommendations: each participant's text vectors, and each approved
-- participant's ranked list of partners (services/matching/recommendations.py).

-- One vector per request and per offer (float32 little-endian, `dimension` wide),
-- of the texts and by the model recorded beside them: they are current while
-- these equal participants.requests / offers (a profile update re-embeds only then).
CREATE TABLE IF NOT EXISTS participant_vectors (
    registration_id text PRIMARY KEY,
    event_id        text NOT NULL,
    model           text NOT NULL,
    requests        text[] NOT NULL,
    offers          text[] NOT NULL,
    dimension       integer NOT NULL,
    request_vectors bytea NOT NULL,
    offer_vectors   bytea NOT NULL
);

CREATE INDEX IF NOT EXISTS participant_vectors_by_event ON participant_vectors (event_id);

-- The best K partners of an approved participant, best first (ties by partner id).
-- Reasons are worded when the list is read, from both profiles and their vectors.
CREATE TABLE IF NOT EXISTS recommendation_lists (
    registration_id text PRIMARY KEY,
    event_id        text NOT NULL,
    partner_ids     text[] NOT NULL,
    scores          real[] NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(partner_ids) = cardinality(scores))
);

CREATE INDEX IF NOT EXISTS recommendation_lists_by_event ON recommendation_lists (event_id);
-- "Which lists hold this participant?" when it changes or leaves.
CREATE INDEX IF NOT EXISTS recommendation_lists_by_partner
    ON recommendation_lists USING gin (partner_ids);

-- One row per brokerage event: locked by every change to its lists (so they are
-- serialised), and a random token that changes with them (a process may reuse
-- the participants it loaded while the token is the one it wrote).
CREATE TABLE IF NOT EXISTS recommendation_state (
    event_id text PRIMARY KEY,
    token    text
);
