-- The budget ledger: double entry in integer pence (see docs/budget.md).

-- Accounts: one per ledger, commissioner, financial year, programme, kind, counterparty and
-- locality. The four balance columns are a cache of the sums of the account's transfers;
-- `homeward-budget check` proves they agree.
CREATE TABLE accounts (
    id               bigserial   PRIMARY KEY,
    ledger           text        NOT NULL CHECK (ledger IN ('budget', 'memo')),
    commissioner     text        NOT NULL,
    financial_year   text        NOT NULL CHECK (financial_year ~ '^\d{4}-\d{2}$'),
    programme        text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('source', 'budget', 'spend', 'baseline', 'saving')),
    counterparty     text        NOT NULL DEFAULT '',
    locality         text        NOT NULL DEFAULT '' CHECK (locality IN ('', 'local', 'out_of_area')),
    debits_pending   bigint      NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted    bigint      NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending  bigint      NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted   bigint      NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (ledger, commissioner, financial_year, programme, kind, counterparty, locality)
);
CREATE INDEX accounts_commissioner_year ON accounts (commissioner, financial_year);

-- Transfers: immutable. The id is derived from the event (or the accrual range) that caused
-- the transfer, so a replay inserts nothing. post_pending and void_pending draw on a pending
-- transfer (a commitment) and never exceed it.
CREATE TABLE transfers (
    id                 uuid        PRIMARY KEY,
    seq                bigserial   NOT NULL UNIQUE,  -- the order in which entries were posted
    kind               text        NOT NULL CHECK (kind IN ('posted', 'pending', 'post_pending', 'void_pending')),
    debit_account_id   bigint      NOT NULL REFERENCES accounts (id),
    credit_account_id  bigint      NOT NULL REFERENCES accounts (id),
    amount             bigint      NOT NULL CHECK (amount > 0),
    pending_id         uuid        REFERENCES transfers (id),
    purpose            text        NOT NULL,
    cause              text        NOT NULL,
    stream_id          text,
    placement_id       text,
    funder             text,
    financial_year     text,
    range_start        date,
    range_end          date,
    effective_on       date        NOT NULL,
    event_at           timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    metadata           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL))
);
CREATE INDEX transfers_stream ON transfers (stream_id);
CREATE INDEX transfers_placement ON transfers (placement_id);
CREATE INDEX transfers_pending ON transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_debit ON transfers (debit_account_id, effective_on);
CREATE INDEX transfers_credit ON transfers (credit_account_id, effective_on);

CREATE FUNCTION transfers_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transfers are append-only: % refused; post a correcting transfer instead', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER transfers_no_update_or_delete BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION transfers_are_append_only();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION transfers_are_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON transfers FROM PUBLIC;

CREATE FUNCTION transfers_draw_within_pending() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p      transfers%ROWTYPE;
    drawn  bigint;
BEGIN
    IF NEW.pending_id IS NULL OR EXISTS (SELECT 1 FROM transfers WHERE id = NEW.id) THEN
        RETURN NEW;  -- a replay is skipped by ON CONFLICT
    END IF;
    SELECT * INTO p FROM transfers WHERE id = NEW.pending_id;
    IF NOT FOUND OR p.kind <> 'pending' THEN
        RAISE EXCEPTION 'transfer %: % is not a pending transfer', NEW.id, NEW.pending_id;
    END IF;
    IF (p.debit_account_id, p.credit_account_id) <> (NEW.debit_account_id, NEW.credit_account_id) THEN
        RAISE EXCEPTION 'transfer %: accounts differ from pending transfer %', NEW.id, p.id;
    END IF;
    SELECT coalesce(sum(amount), 0) INTO drawn FROM transfers WHERE pending_id = p.id;
    IF drawn + NEW.amount > p.amount THEN
        RAISE EXCEPTION 'transfer %: would draw % of pending % which has % left', NEW.id, NEW.amount, p.id, p.amount - drawn;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER transfers_pending_draws BEFORE INSERT ON transfers
    FOR EACH ROW EXECUTE FUNCTION transfers_draw_within_pending();

-- Accounts are never removed and never change identity; only the cached balances move.
CREATE FUNCTION accounts_keep_identity() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (OLD.ledger, OLD.commissioner, OLD.financial_year, OLD.programme, OLD.kind,
                            OLD.counterparty, OLD.locality)
        IS DISTINCT FROM (NEW.ledger, NEW.commissioner, NEW.financial_year, NEW.programme, NEW.kind,
                          NEW.counterparty, NEW.locality) THEN
        RAISE EXCEPTION 'accounts keep their identity and are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER accounts_identity BEFORE UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_keep_identity();

-- Streams: one per placement and one per repatriation saving; their terms and how far the
-- ledger has gone with them. Never holds an NHS number: the patient is `details.patient_ref`.
CREATE TABLE streams (
    id                 text        PRIMARY KEY,
    kind               text        NOT NULL CHECK (kind IN ('placement', 'saving')),
    placement_id       text        NOT NULL,
    commissioner       text        NOT NULL,
    programme          text        NOT NULL,
    provider           text        NOT NULL,
    out_of_area        boolean     NOT NULL,
    start_date         date        NOT NULL,
    planned_end_date   date,
    end_date           date,
    registered_rate    bigint      NOT NULL,
    rates              jsonb       NOT NULL,
    shares             jsonb       NOT NULL,
    accrued_through    date        NOT NULL,
    committed_through  date        NOT NULL,
    epoch              int         NOT NULL DEFAULT 0,
    last_effective     date,
    applied_events     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    details            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX streams_placement ON streams (placement_id);
CREATE INDEX streams_accrued ON streams (accrued_through);

CREATE TABLE allocations (
    commissioner         text        NOT NULL,
    allocation_id        text        NOT NULL,
    financial_year       text        NOT NULL,
    programme            text        NOT NULL,
    amount_pence         bigint      NOT NULL,
    source               text        NOT NULL,
    source_organisation  text,
    event_ids            jsonb       NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (commissioner, allocation_id)
);

CREATE TABLE invoices (
    provider         text        NOT NULL,
    invoice_id       text        NOT NULL,
    commissioner     text        NOT NULL,
    placement_id     text        NOT NULL,
    period_start     date        NOT NULL,
    period_end       date        NOT NULL,
    amount_pence     bigint      NOT NULL,
    event_id         text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('matched', 'parked', 'refused')),
    accrued_pence    bigint,
    variance_pence   bigint,
    tolerance_pence  bigint,
    flagged          boolean     NOT NULL DEFAULT false,
    reason           text,
    received_at      timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, invoice_id)
);
CREATE INDEX invoices_placement ON invoices (placement_id);
CREATE INDEX invoices_commissioner ON invoices (commissioner, status);

-- Placement events that arrived before their placement; applied when it is registered.
CREATE TABLE parked_events (
    id            bigserial   PRIMARY KEY,
    placement_id  text        NOT NULL,
    event_id      text        NOT NULL UNIQUE,
    event_type    text        NOT NULL,
    event         text        NOT NULL,
    reason        text        NOT NULL,
    parked_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_events_placement ON parked_events (placement_id, id);

CREATE TABLE threshold_states (
    commissioner       text        NOT NULL,
    financial_year     text        NOT NULL,
    programme          text        NOT NULL,
    threshold_percent  int         NOT NULL,
    breached           boolean     NOT NULL,
    arm                int         NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (commissioner, financial_year, programme, threshold_percent)
);
