-- The placement register. Event time (when a partner says something happened) is kept apart
-- from recording time throughout.

-- The only place an NHS number is stored: one row per person, keyed by the pseudonymous
-- reference every other table and every event uses. Kept so references can be re-derived
-- if the pseudonymisation key is rotated; never read into an event, a log or the API.
CREATE TABLE patients (
    patient_ref  text PRIMARY KEY,
    nhs_number   text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Sites' commissioning areas as partners stated them (PlacementMade.provider_site_area,
-- BedAvailabilityUpdated.site_area); a newer statement replaces an older one.
CREATE TABLE sites (
    site        text PRIMARY KEY,
    provider    text NOT NULL,
    area        text NOT NULL,
    stated_at   timestamptz NOT NULL,
    stated_by   text NOT NULL,
    event_id    text NOT NULL
);

CREATE TABLE placements (
    placement_id              text PRIMARY KEY,
    referral_id               text,
    patient_ref               text NOT NULL REFERENCES patients (patient_ref),
    commissioner              text NOT NULL,
    commissioner_area         text NOT NULL,
    provider                  text NOT NULL,
    provider_site             text NOT NULL,
    provider_site_area        text NOT NULL,
    independent_provider      boolean NOT NULL,
    bed_type                  text NOT NULL,
    setting                   text NOT NULL,
    cohort                    text NOT NULL,
    age_band                  text NOT NULL,
    legal_status              text NOT NULL,
    programme                 text NOT NULL,
    start_date                date NOT NULL,
    planned_end_date          date,
    initial_daily_rate_pence  bigint NOT NULL CHECK (initial_daily_rate_pence >= 0),
    out_of_area               boolean NOT NULL,
    out_of_area_reason        text,
    inappropriate             boolean NOT NULL,
    distance_from_home_km     int,
    funding                   jsonb NOT NULL,
    prior_approval_reference  text,
    registered_event_id       text NOT NULL,
    registered_at             timestamptz NOT NULL,
    recorded_at               timestamptz NOT NULL DEFAULT now(),
    end_date                  date,
    end_reason                text,
    transfer_to_placement_id  text,
    ended_event_id            text,
    CHECK (end_date IS NULL OR end_date >= start_date)
);
CREATE INDEX placements_patient ON placements (patient_ref);
CREATE INDEX placements_commissioner ON placements (commissioner, start_date);
CREATE INDEX placements_transfer_to ON placements (transfer_to_placement_id) WHERE transfer_to_placement_id IS NOT NULL;

-- Every rate statement, including past-dated ones; the rate on a day is the latest-stated
-- entry with the latest effective date on or before it.
CREATE TABLE placement_rates (
    id                bigserial PRIMARY KEY,
    placement_id      text NOT NULL REFERENCES placements (placement_id),
    effective_date    date NOT NULL,
    daily_rate_pence  bigint NOT NULL CHECK (daily_rate_pence >= 0),
    reason            text NOT NULL,
    event_id          text NOT NULL,
    event_time        timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (placement_id, event_id)
);

CREATE TABLE reviews (
    placement_id     text NOT NULL REFERENCES placements (placement_id),
    review_type      text NOT NULL,
    review_date      date NOT NULL,
    outcome          text NOT NULL,
    next_review_due  date,
    event_id         text NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (placement_id, review_type, review_date)
);

-- The rule each placement was given when registered (a snapshot of the policy row), and the
-- next due date per review type.
CREATE TABLE review_schedules (
    placement_id         text NOT NULL REFERENCES placements (placement_id),
    review_type          text NOT NULL,
    interval_days        int NOT NULL CHECK (interval_days > 0),
    due_soon_days        int NOT NULL CHECK (due_soon_days >= 0),
    escalate_after_days  int NOT NULL CHECK (escalate_after_days > 0),
    policy_source        text NOT NULL,
    due_date             date NOT NULL,
    last_review_date     date,
    PRIMARY KEY (placement_id, review_type)
);
CREATE INDEX review_schedules_due ON review_schedules (due_date);

-- What the scheduler has said, once per (placement, review type, due date, kind, level):
-- the guard that makes ReviewDueSoon/ReviewOverdue exactly-once across restarts and replicas.
CREATE TABLE review_alerts (
    placement_id  text NOT NULL,
    review_type   text NOT NULL,
    due_date      date NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('due_soon', 'overdue')),
    level         int NOT NULL,
    event_id      text NOT NULL,
    emitted_at    timestamptz NOT NULL,
    PRIMARY KEY (placement_id, review_type, due_date, kind, level)
);

CREATE TABLE repatriations (
    from_placement_id      text PRIMARY KEY REFERENCES placements (placement_id),
    to_placement_id        text NOT NULL UNIQUE REFERENCES placements (placement_id),
    patient_ref            text NOT NULL,
    commissioner           text NOT NULL,
    programme              text NOT NULL,
    from_site              text NOT NULL,
    to_site                text NOT NULL,
    from_daily_rate_pence  bigint NOT NULL,
    to_daily_rate_pence    bigint NOT NULL,
    repatriated_on         date NOT NULL,
    explicit               boolean NOT NULL,
    funding                jsonb NOT NULL,
    event_id               text NOT NULL,
    recorded_at            timestamptz NOT NULL
);
CREATE INDEX repatriations_on ON repatriations (repatriated_on);

-- Events about placements not yet known, applied when the PlacementMade arrives.
CREATE TABLE parked_events (
    id            bigserial PRIMARY KEY,
    event_id      text NOT NULL UNIQUE,
    placement_id  text NOT NULL,
    event_type    text NOT NULL,
    event_time    timestamptz NOT NULL,
    organisation  text,
    event         jsonb NOT NULL,
    reason        text NOT NULL,
    parked_at     timestamptz NOT NULL,
    status        text NOT NULL CHECK (status IN ('parked', 'expired', 'applied', 'rejected')),
    expired_at    timestamptz,
    resolved_at   timestamptz,
    resolution    text
);
CREATE INDEX parked_events_waiting ON parked_events (placement_id) WHERE status IN ('parked', 'expired');

-- Local capacity by area and bed type as referrals reports it (LocalCapacityChanged), with history.
CREATE TABLE local_capacity (
    area            text NOT NULL,
    bed_type        text NOT NULL,
    available_beds  int NOT NULL CHECK (available_beds >= 0),
    as_of           timestamptz NOT NULL,
    event_id        text NOT NULL,
    PRIMARY KEY (area, bed_type, as_of)
);
