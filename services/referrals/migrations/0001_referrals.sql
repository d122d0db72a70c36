-- Referrals: one row per referral id (unique across commissioners, because placements
-- name the referral they answer by id alone). No NHS number: only the patient reference.
CREATE TABLE referrals (
    referral_id         text        PRIMARY KEY,
    patient_ref         text        NOT NULL,
    commissioner        text        NOT NULL,
    home_area           text        NOT NULL,
    bed_type            text        NOT NULL,
    cohort              text        NOT NULL,
    age_band            text        NOT NULL,
    urgency             text        NOT NULL,
    legal_status        text,
    need_arose_at       timestamptz NOT NULL,
    received_at         timestamptz NOT NULL,
    local_options       jsonb       NOT NULL DEFAULT '[]'::jsonb,
    placement_id        text,
    placed_on           date,
    placed_at           timestamptz,
    placed_provider     text,
    placed_site         text,
    placed_site_area    text,
    placed_bed_type     text,
    out_of_area         boolean,
    out_of_area_reason  text,
    waited_hours        int CHECK (waited_hours >= 0),
    CHECK ((placement_id IS NULL) = (placed_at IS NULL))
);
CREATE INDEX referrals_open ON referrals (need_arose_at) WHERE placement_id IS NULL;
CREATE INDEX referrals_by_commissioner ON referrals (commissioner, urgency);
CREATE INDEX referrals_placed ON referrals (placed_on) WHERE placement_id IS NOT NULL;

-- Placements that named a referral not received yet; applied when it arrives (or by the
-- waits job, when both were handled at once by different consumers). ``problem`` is set when
-- the referral turned out to belong to another commissioner: kept for people to see.
CREATE TABLE parked_placements (
    referral_id   text        NOT NULL,
    placement_id  text        NOT NULL,
    placement     jsonb       NOT NULL,
    parked_at     timestamptz NOT NULL DEFAULT now(),
    problem       text,
    PRIMARY KEY (referral_id, placement_id)
);

-- The latest bed count held per site and bed type.
CREATE TABLE bed_availability (
    site            text        NOT NULL,
    bed_type        text        NOT NULL,
    provider        text        NOT NULL,
    site_area       text        NOT NULL,
    available_beds  int         NOT NULL CHECK (available_beds >= 0),
    total_beds      int         CHECK (total_beds >= 0),
    as_of           timestamptz NOT NULL,
    PRIMARY KEY (site, bed_type)
);
CREATE INDEX bed_availability_by_area ON bed_availability (site_area, bed_type);

-- Every count received, stale or not, so capacity can be answered "as of" a date.
CREATE TABLE bed_reports (
    id              bigserial   PRIMARY KEY,
    event_id        text        NOT NULL UNIQUE,
    site            text        NOT NULL,
    bed_type        text        NOT NULL,
    provider        text        NOT NULL,
    site_area       text        NOT NULL,
    available_beds  int         NOT NULL,
    total_beds      int,
    as_of           timestamptz NOT NULL,
    accepted        boolean     NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bed_reports_by_site ON bed_reports (site, bed_type, as_of);

-- Areas whose published total may have missed a concurrent change (append-only, so writers
-- never wait on each other); the capacity job publishes their settled totals.
CREATE TABLE capacity_unsettled (
    id         bigserial   PRIMARY KEY,
    area       text        NOT NULL,
    bed_type   text        NOT NULL,
    marked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX capacity_unsettled_by_area ON capacity_unsettled (area, bed_type);

-- One row per wait threshold reported for a referral: the scheduler's "emitted once" record.
CREATE TABLE wait_breaches (
    referral_id      text        NOT NULL REFERENCES referrals (referral_id),
    threshold_hours  int         NOT NULL,
    breached_at      timestamptz NOT NULL,
    event_id         text        NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (referral_id, threshold_hours)
);
