-- The audit trail of staff reads (homeward.kit.audit): who read what, when, and which
-- placements, referrals or people it showed. Append-only: rows are inserted by the service's
-- read API and never changed or removed by it; a trigger refuses UPDATE, DELETE and TRUNCATE
-- for every role, the owner included, and the privileges are revoked as well.
CREATE TABLE audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    service       text NOT NULL,
    sub           text NOT NULL,
    organisation  text NOT NULL,
    role          text NOT NULL,
    name          text,
    action        text NOT NULL,               -- the method and path asked for, e.g. GET /placements
    query         text NOT NULL DEFAULT '',    -- the query string as asked
    refs          text[] NOT NULL DEFAULT '{}' -- the placement ids, referral ids or patient references shown
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_organisation_at ON audit_log (organisation, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM CURRENT_USER;
