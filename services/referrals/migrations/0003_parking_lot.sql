-- One parking lot (issue 16): what waits for a referral not yet received is kept in the kit's
-- parking_lot (kit migration 0006, applied before this one), as the event itself, awaiting
-- 'referral:<id>', with an expiry; the service's own tables go.
--
-- parked_withdrawals kept everything a ReferralWithdrawn says (referral, commissioner, when,
-- reason) and the event id and sender, so each row is carried as that event. Two things were
-- not kept and are filled in: its source is the sender's partner source (urn:nhs:ods:<ODS>,
-- without any /<system> suffix it had) and its time is withdrawn_at (nothing but the order of
-- retries reads it). A row still waiting is parked again, expiring 30 days after it was parked
-- (the kit's default parking_expiry_days); a row whose referral had turned out to be another
-- commissioner's is carried as rejected, with its problem as the resolution, so ops still see it.
INSERT INTO parking_lot (event_id, source, awaiting, event_type, event_time, origin, reason, parked_at,
                         expires_at, status, resolved_at, resolution, event)
SELECT w.event_id,
       'urn:nhs:ods:' || w.organisation,
       'referral:' || w.referral_id,
       'homeward.ReferralWithdrawn.v1',
       w.withdrawn_at,
       NULL,
       'referral-unknown',
       w.parked_at,
       w.parked_at + interval '30 days',
       CASE WHEN w.problem IS NULL THEN 'parked' ELSE 'rejected' END,
       CASE WHEN w.problem IS NULL THEN NULL ELSE now() END,
       CASE WHEN w.problem IS NULL THEN NULL ELSE 'not-party: ' || w.problem END,
       jsonb_build_object(
           'specversion', '1.0',
           'id', w.event_id,
           'source', 'urn:nhs:ods:' || w.organisation,
           'type', 'homeward.ReferralWithdrawn.v1',
           'time', to_char(w.withdrawn_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'datacontenttype', 'application/json',
           'data', jsonb_build_object(
               'referral_id', w.referral_id,
               'commissioner', w.commissioner,
               'withdrawn_at', to_char(w.withdrawn_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
               'reason', w.reason))::text
FROM parked_withdrawals w
ON CONFLICT (source, event_id) DO NOTHING;
DROP TABLE parked_withdrawals;

-- parked_placements kept only the ten fields of a PlacementRegistered this service uses, not the
-- event: no event id, source or time, and none of the contract's other required fields (the
-- patient reference, setting, cohort, rate, funding...). A parking-lot entry is parsed and
-- validated by the contracts again when it is retried, so these rows cannot be carried without
-- inventing data, and they are dropped:
-- * a row with a problem (its referral was another commissioner's) had ended already;
-- * a row whose referral had arrived was applied by the previous release's waits job, within a
--   scheduler interval; stop the old release after that job has run;
-- * a row still waiting names a referral never received. If that referral comes after the
--   upgrade, it stays open (and its waits are reported) unless placements publishes the placement
--   again. The old /summary counted these rows as parked_placements, so ops know how many there were.
DROP TABLE parked_placements;
