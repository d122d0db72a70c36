-- The HTTP front door (POST /events): partners' API keys and the receipts that make a resend
-- over HTTP idempotent.

-- API keys, stored only as the sha256 of the whole key (a high-entropy random secret, so a
-- plain hash is enough: there is nothing to guess). key_id is the short, non-secret part of
-- the key (hwk_<key_id>_<secret>) by which it is looked up. A key speaks for one ODS code.
-- It works until revoked_at; `homeward partner key rotate --grace` sets revoked_at in the
-- future, so the old key goes on working for that window.
CREATE TABLE partner_api_keys (
    key_id         text        PRIMARY KEY,
    ods            text        NOT NULL CHECK (ods ~ '^[A-Z0-9]{3,9}$'),
    secret_sha256  text        NOT NULL CHECK (secret_sha256 ~ '^[0-9a-f]{64}$'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE INDEX partner_api_keys_by_ods ON partner_api_keys (ods, created_at);

-- One row per event accepted over HTTP, by the partner's (source, id), written in the same
-- transaction as the outbox row that puts the event on the partner's topic. The digest is
-- the kit's inbox digest (type, subject, data): the same digest again is an exact resend
-- (200), another one a reused id (409).
CREATE TABLE http_receipts (
    source       text        NOT NULL,
    event_id     text        NOT NULL,
    digest       text        NOT NULL,
    event_type   text        NOT NULL,
    ods          text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX http_receipts_received_at ON http_receipts (received_at);
