-- Notification's projections of the other services' events, its delivery queue,
-- recipients' preferences and organisers' webhook endpoints.

CREATE TABLE IF NOT EXISTS brokerage_events (
    event_id     text PRIMARY KEY,
    organiser_id text NOT NULL,
    name         text NOT NULL,
    venue        text NOT NULL,
    time_zone    text NOT NULL
);

-- What notification knows of each meeting (matching's request id), for its
-- calendar entry: where it stands, the last SEQUENCE sent, whether calendars hold it.
CREATE TABLE IF NOT EXISTS meetings (
    meeting_id   text PRIMARY KEY,
    event_id     text NOT NULL,
    participants text[] NOT NULL,
    slot_start   timestamptz,
    slot_end     timestamptz,
    table_no     integer,
    mode         text,
    placed       boolean NOT NULL DEFAULT false,
    sequence     integer NOT NULL DEFAULT -1,
    live         boolean NOT NULL DEFAULT false,
    cancelled    boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS meetings_by_participant ON meetings USING gin (participants);

-- Each recipient's choices; no row means: everything, immediately, in the event's time zone.
CREATE TABLE IF NOT EXISTS preferences (
    registration_id text PRIMARY KEY,
    muted           text[] NOT NULL DEFAULT '{}',   -- message kinds not wanted
    digest          boolean NOT NULL DEFAULT false, -- hold messages for a daily digest
    time_zone       text,                           -- null: the event's
    unsubscribed    boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    endpoint_id  uuid PRIMARY KEY,
    event_id     text NOT NULL,
    url          text NOT NULL,
    kinds        text[] NOT NULL,
    secret       text NOT NULL,  -- needed to sign; never returned after creation
    created_by   text NOT NULL,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS webhook_endpoints_by_event ON webhook_endpoints (event_id) WHERE active;

-- The durable delivery queue. A row is created in the same transaction as the
-- inbox row of the event that causes it; the UNIQUE dedupe key makes a repeat
-- of that event (or of the reminder it schedules) create nothing. Reminders and
-- digests are rows whose next_attempt_at lies ahead: durable timers.
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id     uuid PRIMARY KEY,            -- uuid5 of the dedupe key
    cause_id        text NOT NULL,               -- the domain event's source#id (or reminder:…)
    recipient       text NOT NULL,               -- registration id, or webhook endpoint id
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    template        text NOT NULL,               -- the message kind
    event_id        text NOT NULL,               -- the brokerage event
    meeting_id      text,
    context         jsonb NOT NULL,              -- the notice's facts, frozen; no personal data
    message_id      text NOT NULL,               -- Message-ID (email) or webhook-id
    digest          boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'skipped', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,                        -- or why it was skipped / cancelled
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cause_id, recipient, channel, template)
);

CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_recipient ON deliveries (recipient, created_at);
CREATE INDEX IF NOT EXISTS deliveries_by_meeting ON deliveries (meeting_id) WHERE status = 'pending';

-- Wake the sender when rows arrive (it also polls, so a lost notification costs one interval).
CREATE OR REPLACE FUNCTION deliveries_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('deliveries', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS deliveries_inserted ON deliveries;
CREATE TRIGGER deliveries_inserted AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_notify();
