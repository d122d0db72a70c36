-- The ledger gate (see docs/budget.md, Concurrency): budget_lock() gains a third argument and
-- counts its calls per transaction, so that the adapter can take the whole ledger after a big
-- batch. Replaces the two-argument function of migration 0003.
DROP FUNCTION budget_lock(bigint[], int);

-- budget_lock(keys, patience_ms, whole_ledger): called before a use case reads what it will
-- change; returns how many times it has been called in this transaction.
--
-- The ledger gate ("Budg", the one lock every writer used to take) comes first in every
-- transaction: shared by transactions that lock per key, exclusive for one that takes the whole
-- ledger (whole_ledger on its first call: the adapter asks for it while its batches are big).
-- A whole-ledger transaction needs no other key; nobody else is writing.
--
-- Per-key transactions take their keys as transaction-scoped advisory locks, smallest id first.
-- A consumer batch is one transaction that handles many events, so it gathers keys event after
-- event, not in one sorted pass. To keep that free of deadlocks:
--   * a key above every key this transaction already holds is waited for as long as it takes:
--     waits that only ever go upwards can never close a cycle;
--   * a key at or below one it holds is tried first (it is often held already, or free); if
--     another transaction holds it, it is waited for at most patience_ms, then the transaction
--     gives up with SQLSTATE 40P01, which the kit answers by rolling the batch back and running
--     it again. With patience_ms NULL it waits like any lock, and PostgreSQL's deadlock detector
--     (deadlock_timeout) picks a transaction to fail with the same code if a cycle forms.
-- What the transaction holds is kept in transaction-local settings, which, like the locks
-- themselves, a rollback to a savepoint undoes.
CREATE FUNCTION budget_lock(keys bigint[], patience_ms int, whole_ledger boolean) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    gate   text := coalesce(current_setting('homeward_budget.gate', true), '');
    calls  int := coalesce(nullif(current_setting('homeward_budget.calls', true), '')::int, 0) + 1;
    high   bigint := nullif(current_setting('homeward_budget.lock_high', true), '')::bigint;
    k      bigint;
    saved  text;
BEGIN
    PERFORM set_config('homeward_budget.calls', calls::text, true);
    IF gate = '' THEN
        IF whole_ledger THEN
            PERFORM pg_advisory_xact_lock(1114989671);  -- 0x42756467, "Budg"
            gate := 'whole';
        ELSE
            PERFORM pg_advisory_xact_lock_shared(1114989671);
            gate := 'keys';
        END IF;
        PERFORM set_config('homeward_budget.gate', gate, true);
    END IF;
    IF gate = 'whole' THEN
        RETURN calls;
    END IF;
    FOR k IN SELECT DISTINCT x FROM unnest(keys) AS x ORDER BY x LOOP
        IF high IS NULL OR k > high THEN
            PERFORM pg_advisory_xact_lock(k);
            high := k;
        ELSIF NOT pg_try_advisory_xact_lock(k) THEN
            IF patience_ms IS NULL THEN
                PERFORM pg_advisory_xact_lock(k);
            ELSE
                saved := current_setting('lock_timeout');
                PERFORM set_config('lock_timeout', greatest(patience_ms, 1) || 'ms', true);
                BEGIN
                    PERFORM pg_advisory_xact_lock(k);
                EXCEPTION WHEN lock_not_available THEN
                    RAISE EXCEPTION 'budget ledger lock % is held by another transaction and this one already holds '
                                    'a lock above it: waiting could deadlock, so the batch is rolled back to run again', k
                        USING ERRCODE = 'deadlock_detected';
                END;
                PERFORM set_config('lock_timeout', saved, true);
            END IF;
        END IF;
    END LOOP;
    PERFORM set_config('homeward_budget.lock_high', high::text, true);
    RETURN calls;
END
$$;
