-- Triage as of the referral's event time (issue 14): each referral keeps the instant whose bed
-- counts it was triaged on and the id of the ReferralTriaged that stands, so a count for that
-- time arriving later can triage it again. Referrals triaged before this migration keep a
-- null instant and are never triaged again.
ALTER TABLE referrals ADD COLUMN triaged_as_of timestamptz;
ALTER TABLE referrals ADD COLUMN triage_id text;
CREATE INDEX referrals_by_triage ON referrals (home_area, bed_type, triaged_as_of);

-- A referral withdrawn by its referrer: the earliest withdrawal stands. A placement that answers
-- the referral is still recorded (the person was placed); the wait ends at the earlier of the two.
ALTER TABLE referrals ADD COLUMN withdrawn_at timestamptz;
ALTER TABLE referrals ADD COLUMN withdrawal_reason text;
ALTER TABLE referrals ADD COLUMN withdrawal_event_id text;
ALTER TABLE referrals ADD COLUMN withdrawn_by text;
CREATE INDEX referrals_waiting ON referrals (need_arose_at) WHERE placement_id IS NULL AND withdrawn_at IS NULL;

-- Withdrawals that arrived before their referral (they may come from another partner's topic);
-- applied when it arrives. ``problem`` is set when the referral is another commissioner's.
CREATE TABLE parked_withdrawals (
    referral_id    text        PRIMARY KEY,
    commissioner   text        NOT NULL,
    withdrawn_at   timestamptz NOT NULL,
    reason         text        NOT NULL,
    event_id       text        NOT NULL,
    organisation   text        NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    problem        text
);

-- The count history, by area, for triage as of an instant.
CREATE INDEX bed_reports_by_area ON bed_reports (site_area, bed_type, site);

-- Areas whose referrals may have been triaged without a count handled at the same moment
-- (append-only, like capacity_unsettled); the capacity job triages them again.
CREATE TABLE triage_unsettled (
    id         bigserial   PRIMARY KEY,
    area       text        NOT NULL,
    bed_type   text        NOT NULL,
    since      timestamptz NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX triage_unsettled_by_area ON triage_unsettled (area, bed_type);
