-- Times a participant is busy with the side programme (guided tours, ...): no meetings then.
ALTER TABLE attendees ADD COLUMN IF NOT EXISTS blocked jsonb NOT NULL DEFAULT '[]';
