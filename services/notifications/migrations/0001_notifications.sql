-- Who is told what. A recipient is one member of staff (one address) in one organisation
-- (a commissioner's or a provider's ODS code) with one role.
CREATE TABLE recipients (
    id            bigserial   PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    display_name  text,
    organisation  text        NOT NULL CHECK (organisation ~ '^[A-Z0-9]{3,8}$'),
    role          text        NOT NULL
                  CHECK (role IN ('case_manager', 'clinical_lead', 'finance_lead', 'bed_manager', 'oap_lead')),
    digest        boolean     NOT NULL DEFAULT false,
    active        boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recipients_organisation ON recipients (organisation) WHERE active;

-- A recipient hears about one event type at escalation levels in [min, max] (max NULL: no
-- upper bound) unless they opted out. Events that do not escalate are level 1.
CREATE TABLE subscriptions (
    id                    bigserial   PRIMARY KEY,
    recipient_id          bigint      NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    event_type            text        NOT NULL,
    min_escalation_level  int         NOT NULL DEFAULT 1 CHECK (min_escalation_level >= 1),
    max_escalation_level  int         CHECK (max_escalation_level IS NULL OR max_escalation_level >= min_escalation_level),
    opted_out_at          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (recipient_id, event_type)
);
CREATE INDEX subscriptions_event_type ON subscriptions (event_type) WHERE opted_out_at IS NULL;

-- The routing policy "subscribe to the defaults for my role" copies from. Data, not code:
-- change it with a new migration or plain SQL.
CREATE TABLE default_routes (
    event_type            text NOT NULL,
    role                  text NOT NULL,
    min_escalation_level  int  NOT NULL DEFAULT 1,
    max_escalation_level  int,
    PRIMARY KEY (event_type, role)
);
INSERT INTO default_routes (event_type, role, min_escalation_level, max_escalation_level) VALUES
    ('ReviewOverdue',            'case_manager',  1, NULL),
    ('ReviewOverdue',            'clinical_lead', 2, NULL),
    ('ReviewDueSoon',            'case_manager',  1, NULL),
    ('PlacementRegistered',      'oap_lead',      1, NULL),
    ('PatientRepatriated',       'case_manager',  1, NULL),
    ('PatientRepatriated',       'finance_lead',  1, NULL),
    ('LocalCapacityUnavailable', 'oap_lead',      1, NULL),
    ('LocalCapacityUnavailable', 'bed_manager',   1, NULL),
    ('ReferralWaitBreached',     'bed_manager',   1, NULL),
    ('BudgetThresholdBreached',  'finance_lead',  1, NULL),
    ('InvoiceVarianceFound',     'finance_lead',  1, NULL);

-- One email to send: an alert for one (event, recipient), or a recipient's daily digest.
-- The row exists before the first attempt; attempts is counted when a sender claims it, so a
-- crash between the SMTP server's acceptance and the mark leaves a trace, and the resend
-- carries the same Message-ID.
CREATE TABLE emails (
    id               text        PRIMARY KEY,
    message_id       text        NOT NULL UNIQUE,
    kind             text        NOT NULL CHECK (kind IN ('alert', 'digest')),
    recipient_id     bigint      NOT NULL REFERENCES recipients (id),
    to_address       text        NOT NULL,
    to_name          text,
    digest_date      date,
    subject          text        NOT NULL,
    body_text        text        NOT NULL,
    body_html        text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_error       text,
    requeued         int         NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz,
    failed_at        timestamptz,
    UNIQUE (recipient_id, digest_date)
);
CREATE INDEX emails_due ON emails (next_attempt_at) WHERE status = 'pending';

-- The sent-mail log: one row per (event, recipient), written in the transaction that consumed
-- the event. Digest rows wait (email_id NULL) until the daily digest takes them.
CREATE TABLE notifications (
    id                text        PRIMARY KEY,
    cause_event_id    text        NOT NULL,
    cause_event_type  text        NOT NULL,
    event_name        text        NOT NULL,
    correlation_id    text,
    occurred_at       timestamptz NOT NULL,
    recipient_id      bigint      NOT NULL REFERENCES recipients (id),
    email_address     text        NOT NULL,
    organisation      text        NOT NULL,
    role              text        NOT NULL,
    reference         text        NOT NULL,
    escalation_level  int         NOT NULL DEFAULT 1,
    subject           text        NOT NULL,
    due_by            date        NOT NULL,
    facts             jsonb       NOT NULL DEFAULT '[]'::jsonb,
    digest            boolean     NOT NULL,
    email_id          text        REFERENCES emails (id),
    message_id        text,
    status            text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    recorded_at       timestamptz NOT NULL,
    sent_at           timestamptz,
    failed_at         timestamptz,
    UNIQUE (cause_event_id, recipient_id)
);
CREATE INDEX notifications_email ON notifications (email_id);
CREATE INDEX notifications_digest_waiting ON notifications (recipient_id, recorded_at)
    WHERE digest AND email_id IS NULL AND status = 'pending';
CREATE INDEX notifications_log ON notifications (organisation, recorded_at);
