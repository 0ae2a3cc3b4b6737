-- Support offices (EEN) in the read side: the offices an event declared, and who takes
-- part in each meeting request, so a request can be counted for its participants'
-- offices. Both are NULL for rows projected before this migration (an office's figures
-- then count no request of theirs; the offices are then listed by their ids).
ALTER TABLE brokerage_events ADD COLUMN IF NOT EXISTS support_offices jsonb;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS participants text[];
