-- A NACHA file recorded by an export whose process stopped before writing it to disk has its payments
-- committed to it (trace numbers assigned), yet no bank ever received it. Settlement waits for the write
-- (src/ach/settlement.ts); the worker raises one alert per such file once it is overdue, and records
-- that alert here so the next pass does not raise it again.
ALTER TABLE ach_files ADD COLUMN unwritten_alert_id uuid REFERENCES alerts(id);
CREATE INDEX ach_files_unwritten ON ach_files (created_at) WHERE written_at IS NULL;
