-- A delivery's id is the uuid5 of its dedupe key (cause, recipient, channel, kind:
-- `domain.delivery_id`, the only way one is made), so the primary key already makes a
-- dedupe key unique. The second unique index on the same four columns (long text keys,
-- the table's largest index) was checked and written for every queued delivery and
-- kept nothing out that the primary key lets in; nothing reads by it.
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_cause_id_recipient_channel_template_key;
