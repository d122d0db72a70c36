-- One parking lot for every service (homeward.kit.parking): an event that needs an aggregate
-- not yet seen is kept whole, with what it waits for, why, and when it expires. Entries are
-- kept after they end (applied, rejected or expired) so ops can see what waited and how it ended.
CREATE TABLE parking_lot (
    id           bigserial   PRIMARY KEY,
    event_id     text        NOT NULL,
    source       text        NOT NULL,
    awaiting     text        NOT NULL,
    event_type   text        NOT NULL,
    event_time   timestamptz NOT NULL,
    origin       text,
    reason       text        NOT NULL,
    parked_at    timestamptz NOT NULL,
    expires_at   timestamptz,
    status       text        NOT NULL CHECK (status IN ('parked', 'applied', 'rejected', 'expired')),
    resolved_at  timestamptz,
    resolution   text,
    event        text        NOT NULL,
    UNIQUE (source, event_id)
);
CREATE INDEX parking_lot_waiting ON parking_lot (awaiting, event_time, id) WHERE status = 'parked';
CREATE INDEX parking_lot_expiry ON parking_lot (expires_at) WHERE status = 'parked';
