-- Wake the relay from the database instead of a second round trip per row: one NOTIFY per
-- INSERT statement that added rows (a statement whose rows all conflicted sends none). The
-- payload is how many rows the statement added, for whoever listens; the relay only needs the
-- wake-up. PostgreSQL delivers notifications at commit, and folds identical ones of one
-- transaction into one. The channel is homeward.kit.outbox.CHANNEL.
CREATE FUNCTION homeward_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    added bigint;
BEGIN
    SELECT count(*) INTO added FROM inserted_rows;
    IF added > 0 THEN
        PERFORM pg_notify('homeward_outbox', added::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION homeward_outbox_notify();
