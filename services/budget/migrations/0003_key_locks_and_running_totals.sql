-- Ledger writers lock per key instead of once per database, and the figures the threshold
-- checks need are kept as running totals (see docs/budget.md, Concurrency and Thresholds).

-- budget_lock(keys, patience_ms): take these transaction-scoped advisory locks, smallest id
-- first. A consumer batch is one transaction that handles many events, so it gathers locks
-- event after event, not in one sorted pass. To keep that free of deadlocks:
--   * a key above every key this transaction already holds is waited for as long as it takes:
--     waits that only ever go upwards can never close a cycle;
--   * a key at or below one it holds is tried first (it is often held already, or free); if
--     another transaction holds it, it is waited for at most patience_ms, then the transaction
--     gives up with SQLSTATE 40P01, which the kit answers by rolling the batch back and running
--     it again. With patience_ms NULL it waits like any lock, and PostgreSQL's deadlock detector
--     (deadlock_timeout) picks a transaction to fail with the same code if a cycle forms.
-- The highest key held is kept in a transaction-local setting, which, like the locks
-- themselves, is undone by a rollback to a savepoint.
CREATE FUNCTION budget_lock(keys bigint[], patience_ms int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    high   bigint := nullif(current_setting('homeward_budget.lock_high', true), '')::bigint;
    k      bigint;
    saved  text;
BEGIN
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
END
$$;

-- Running totals: per commissioner, financial year and programme, the figures of a position
-- (domain/position.py) summed over its accounts. `post` adds what each new transfer adds, in the
-- same statement that moves the accounts' cached balances; `homeward-budget check` proves they
-- equal the sums of the cached balances.
CREATE TABLE position_totals (
    commissioner       text        NOT NULL,
    financial_year     text        NOT NULL,
    programme          text        NOT NULL,
    allocated          bigint      NOT NULL DEFAULT 0,
    spent              bigint      NOT NULL DEFAULT 0,
    committed          bigint      NOT NULL DEFAULT 0,
    out_of_area_spent  bigint      NOT NULL DEFAULT 0,
    local_spent        bigint      NOT NULL DEFAULT 0,
    savings_to_date    bigint      NOT NULL DEFAULT 0,
    savings_year       bigint      NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (commissioner, financial_year, programme)
);

-- backfill: the totals of a ledger that existed before this migration (tests run this part again).
INSERT INTO position_totals (commissioner, financial_year, programme, allocated, spent, committed,
                             out_of_area_spent, local_spent, savings_to_date, savings_year)
SELECT commissioner, financial_year, programme,
       sum(CASE WHEN kind = 'source' THEN debits_posted - credits_posted ELSE 0 END),
       sum(CASE WHEN kind = 'spend' THEN credits_posted - debits_posted ELSE 0 END),
       sum(CASE WHEN kind = 'spend' THEN credits_pending - debits_pending ELSE 0 END),
       sum(CASE WHEN kind = 'spend' AND locality = 'out_of_area' THEN credits_posted - debits_posted ELSE 0 END),
       sum(CASE WHEN kind = 'spend' AND locality <> 'out_of_area' THEN credits_posted - debits_posted ELSE 0 END),
       sum(CASE WHEN kind = 'saving' THEN credits_posted - debits_posted ELSE 0 END),
       sum(CASE WHEN kind = 'saving' THEN credits_posted - debits_posted + credits_pending - debits_pending
                ELSE 0 END)
FROM accounts
WHERE kind IN ('source', 'spend', 'saving')
GROUP BY commissioner, financial_year, programme;
