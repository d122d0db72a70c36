-- Alerts that are about today (docs/notifications.md, "Timeliness"). An alert whose action was
-- due long before the service's today (a replay, a backfill) is recorded as 'suppressed', with
-- the reason, and never emailed; one due in the recent past is 'late' and goes into the daily
-- digest.
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sent', 'failed', 'suppressed'));
ALTER TABLE notifications ADD COLUMN late boolean NOT NULL DEFAULT false;
ALTER TABLE notifications ADD COLUMN suppressed_reason text;
CREATE INDEX notifications_suppressed ON notifications (organisation, recorded_at) WHERE status = 'suppressed';

-- The fencing token of the sender that claimed an email last: it renews the lease under that
-- token just before handing the email to the SMTP server, so an email whose lease ran out and
-- was claimed by another sender is not sent by both.
ALTER TABLE emails ADD COLUMN claim_token text;
