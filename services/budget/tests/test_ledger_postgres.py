"""The ledger on the real PostgreSQL: append-only enforcement, draws within commitments, the
invariant check, "as of" balances, running totals equal to the positions summed from balances,
and accrual run concurrently posting once."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from homeward.budget.adapters import postgres as q
from homeward.budget.adapters.postgres import PgBudgetRepository, PgBudgetUnitOfWork
from homeward.budget.domain.calendar import fy_label
from homeward.budget.domain.position import by_programme, position
from homeward.budget.entrypoints.app import MIGRATIONS
from homeward.budget.entrypoints.jobs import run_accrual
from homeward.budget.handlers import (
    HANDLERS,
    allocate,
    change_rate,
    close_placement,
    record_repatriation,
    register_placement,
)
from homeward.budget.ports import Config
from homeward.kit.clock import FixedClock
from homeward.kit.db import create_pool, migrate
from homeward.kit.topics import Topics
from homeward.kit.uow import unit_of_work

from .fakes import allocated, closed, from_partner, from_placements, rate_changed, registered, repatriated

pytestmark = pytest.mark.integration
D = dt.date


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[type-arg]
    await migrate(database, "budget", MIGRATIONS)
    p = await create_pool(database, 1, 4)
    yield p
    await p.close()


async def _handle(pool: asyncpg.Pool, today: dt.date, use_case, event) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Handle ``event`` in a transaction of its own, as the kit's consumer does."""
    clock = FixedClock(dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC))
    factory = functools.partial(PgBudgetUnitOfWork, config=Config())
    handlers = {payload.event_type(): h for payload, h in HANDLERS.items()}
    async with unit_of_work(pool, factory, "budget", clock, cause=event, handlers=handlers) as uow:
        await use_case(event, uow)


async def _seed(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    pooled = registered("P1", start=D(2026, 3, 20), rate=62000, funding=[("05A", 3334), ("05H", 3333), ("05R", 3333)])
    await _handle(pool, D(2026, 3, 21), register_placement, from_placements(pooled, D(2026, 3, 21)))
    await _handle(
        pool,
        D(2026, 3, 21),
        register_placement,
        from_placements(registered("P2", start=D(2026, 1, 5), rate=54500), D(2026, 3, 21)),
    )
    saving = repatriated("P3", on=D(2026, 3, 1), from_rate=62000, to_rate=35000)
    await _handle(pool, D(2026, 3, 21), record_repatriation, from_placements(saving, D(2026, 3, 21)))


async def test_transfers_refuse_update_delete_and_truncate(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    await _seed(pool)
    async with pool.acquire() as conn:
        for sql in (
            "UPDATE transfers SET amount = amount + 1",
            "DELETE FROM transfers",
            "TRUNCATE transfers CASCADE",
            "DELETE FROM accounts",
        ):
            with pytest.raises(asyncpg.exceptions.RestrictViolationError, match=r"append-only|never deleted"):
                await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM transfers") > 0


async def test_the_database_refuses_to_draw_more_than_a_commitment_holds(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    await _seed(pool)
    async with pool.acquire() as conn:
        pending = await conn.fetchrow("SELECT * FROM transfers WHERE kind = 'pending' LIMIT 1")
        with pytest.raises(asyncpg.RaiseError, match="would draw"):
            await conn.execute(
                """INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount, pending_id, purpose,
                       cause, effective_on, event_at)
                   VALUES (gen_random_uuid(), 'post_pending', $1, $2, $3, $4, 'accrual', 'test', now(), now())""",
                pending["debit_account_id"],
                pending["credit_account_id"],
                pending["amount"] + 1,
                pending["id"],
            )


async def test_check_passes_on_a_real_ledger_and_finds_a_tampered_balance(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    await _seed(pool)
    await run_accrual(pool, FixedClock(D(2026, 4, 10)), topics=Topics(), config=Config())
    event = from_placements(rate_changed("P2", D(2026, 2, 1), 60000), D(2026, 4, 11))
    await _handle(pool, D(2026, 4, 11), change_rate, event)
    async with pool.acquire() as conn:
        report = await q.check(conn)
        assert report.ok, report.problems
        assert report.streams == 3
        assert report.totals["budget"]["debits_posted"] == report.totals["budget"]["credits_posted"] > 0
        await conn.execute(
            "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = (SELECT min(id) FROM accounts)"
        )
        tampered = await q.check(conn)
    assert not tampered.ok
    assert any("cached balance" in p for p in tampered.problems)
    assert any("posted debits" in p for p in tampered.problems)


async def test_positions_from_entries_as_of_today_equal_the_cached_balances(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    await _seed(pool)
    await run_accrual(pool, FixedClock(D(2026, 4, 10)), topics=Topics(), config=Config())
    async with pool.acquire() as conn:
        for fy in ("2025-26", "2026-27"):
            cached = position(await PgBudgetRepository(conn).balances("05A", fy), "05A", fy).total
            summed = position(await q.balances_as_of(conn, D(2026, 4, 10), "05A"), "05A", fy).total
            assert cached == summed
        # P2 (£545, from 5 Jan) as of 1 Feb, before the late accrual run: nothing recorded yet.
        early = position(await q.balances_as_of(conn, D(2026, 2, 1), "05A"), "05A", "2025-26").total
        assert early.spent == 0
        # As of 10 April: P2 86 nights to 31 March, plus P1's 05A share of 12 nights, spent in 2025-26.
        p1_share = 12 * 20671  # £620 split 3334/3333/3333: 05A 20670.8 -> 20671 (largest fraction takes the penny)
        assert position(await q.balances_as_of(conn, D(2026, 4, 10), "05A"), "05A", "2025-26").total.spent == (
            86 * 54500 + p1_share
        )


async def _totals_match_positions(conn: asyncpg.Connection) -> int:  # type: ignore[type-arg]
    """Compare the running totals with position() over the cached balances, for every commissioner
    and year with accounts; returns how many were compared."""
    repo = PgBudgetRepository(conn)
    pairs = [
        (r["commissioner"], r["financial_year"])
        for r in await conn.fetch("SELECT DISTINCT commissioner, financial_year FROM accounts ORDER BY 1, 2")
    ]
    totals = await repo.totals(pairs)
    for c, fy in pairs:
        total, programmes = by_programme(totals.get((c, fy), {}))
        pos = position(await repo.balances(c, fy), c, fy)
        assert (c, fy, total, programmes) == (c, fy, pos.total, pos.by_programme)
    return len(pairs)


async def test_running_totals_equal_positions_summed_from_the_balances(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    """A year and a half of placements (pooled, local and out of area, three programmes), rate
    changes, closures, repatriations, allocations and their revisions, accrued month by month."""
    day = D(2026, 1, 5)
    for c in ("05A", "05H", "05R"):
        for fy in ("2025-26", "2026-27", "2027-28"):
            for programme in ("mental_health", "secure_and_forensic"):
                alloc = allocated(c, 50_000_000, fy=fy, allocation_id=f"A-{fy}-{programme}", programme=programme)
                await _handle(pool, day, allocate, from_partner(alloc, c, day))
    revised = allocated("05H", 40_000_000, fy="2026-27", allocation_id="A-2026-27-mental_health")
    await _handle(pool, day, allocate, from_partner(revised, "05H", day))
    pooled = [("05A", 3334), ("05H", 3333), ("05R", 3333)]
    for i in range(12):
        start = day + dt.timedelta(days=29 * i)
        placement = registered(
            f"S{i}",
            start=start,
            rate=40_000 + 1_111 * i,
            commissioner=("05A", "05H", "05R")[i % 3],
            out_of_area=i % 2 == 0,
            planned_end=start + dt.timedelta(days=200) if i % 4 == 0 else None,
            funding=pooled if i % 3 == 0 else (),
            programme=("mental_health", "secure_and_forensic", "learning_disability_and_autism")[i % 3],
        )
        await _handle(pool, start, register_placement, from_placements(placement, start))
        await run_accrual(pool, FixedClock(start + dt.timedelta(days=20)), topics=Topics(), config=Config())
        if i % 3 == 1:
            later = start + dt.timedelta(days=25)
            await _handle(pool, later, change_rate, from_placements(rate_changed(f"S{i}", start, 45_000), later))
        if i >= 2 and i % 2 == 0:
            end = start - dt.timedelta(days=10)
            first = day + dt.timedelta(days=29 * (i - 2))
            await _handle(pool, start, close_placement, from_placements(closed(f"S{i - 2}", end, first), start))
            if i % 4 == 0:
                saving = repatriated(f"S{i - 2}", on=end, from_rate=60_000, to_rate=35_000, funding=pooled)
                await _handle(pool, start, record_repatriation, from_placements(saving, start))
    await run_accrual(pool, FixedClock(D(2027, 6, 1)), topics=Topics(), config=Config())
    async with pool.acquire() as conn:
        assert await _totals_match_positions(conn) >= 9
        report = await q.check(conn)
        assert report.ok, report.problems
        assert await conn.fetchval("SELECT count(DISTINCT programme) FROM position_totals") == 3
        savings = await conn.fetchval("SELECT sum(savings_to_date) FROM position_totals")
        assert savings > 0

        # The migration's backfill gives the same totals from the balances of an existing ledger.
        columns = "commissioner, financial_year, programme, allocated, spent, committed, out_of_area_spent, " + (
            "local_spent, savings_to_date, savings_year"
        )
        kept = await conn.fetch(f"SELECT {columns} FROM position_totals ORDER BY 1, 2, 3")
        backfill = (
            (MIGRATIONS / "0003_key_locks_and_running_totals.sql")
            .read_text()
            .split("-- backfill:")[1]
            .split("\n", 1)[1]
        )
        await conn.execute("DELETE FROM position_totals")
        await conn.execute(backfill)
        rebuilt = await conn.fetch(f"SELECT {columns} FROM position_totals ORDER BY 1, 2, 3")
        assert [tuple(r) for r in rebuilt] == [tuple(r) for r in kept]

        # And the invariant check notices running totals that drift from the balances.
        await conn.execute(
            "UPDATE position_totals SET committed = committed + 1 WHERE (commissioner, financial_year) = ($1, $2)",
            "05H",
            fy_label(2026),
        )
        drifted = await q.check(conn, streams=False)
    assert any("running totals 05H:2026-27" in p for p in drifted.problems)


async def test_two_accrual_runs_at_once_post_each_night_once(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    await _seed(pool)
    clock = FixedClock(D(2026, 6, 15))
    await asyncio.gather(
        run_accrual(pool, clock, topics=Topics(), config=Config(), batch_size=1),
        run_accrual(pool, clock, topics=Topics(), config=Config(), batch_size=2),
    )
    await run_accrual(pool, clock, topics=Topics(), config=Config())
    async with pool.acquire() as conn:
        report = await q.check(conn)
        assert report.ok, report.problems
        duplicated = await conn.fetchval(
            """SELECT count(*) FROM (SELECT stream_id, funder, range_start FROM transfers WHERE purpose = 'accrual'
               GROUP BY 1, 2, 3 HAVING count(*) > 1) d"""
        )
        assert duplicated == 0
        spent = position(await q.balances_as_of(conn, clock.today(), "05A"), "05A", "2026-27").total.spent
    # 1 April - 14 June: 75 nights of P2 at £545 and of 05A's share of P1 at £206.71.
    assert spent == 75 * 54500 + 75 * 20671


async def test_cli_check_and_position_read_the_service_database(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from homeward.budget.entrypoints.cli import main

    await _seed(pool)
    monkeypatch.setenv("HOMEWARD_BUDGET_DATABASE_URL", database)
    monkeypatch.setenv("HOMEWARD_CLOCK", "2026-04-10T12:00:00Z")
    with pytest.raises(SystemExit) as accrued:
        await asyncio.to_thread(main, ["accrue"])
    assert accrued.value.code == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as checked:
        await asyncio.to_thread(main, ["check", "--json"])
    assert checked.value.code == 0
    assert '"ok": true' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        await asyncio.to_thread(main, ["position", "05A", "--financial-year", "2025-26", "--json"])
    out = capsys.readouterr().out
    assert '"spent_pence": ' + str(86 * 54500 + 12 * 20671) in out
    with pytest.raises(SystemExit):
        await asyncio.to_thread(main, ["position", "05A", "--financial-year", "2025-26"])
    spent = 86 * 54500 + 12 * 20671
    assert f"spent: £{spent // 100:,}.{spent % 100:02d}" in capsys.readouterr().out

    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE accounts SET debits_posted = debits_posted + 5 WHERE id = (SELECT max(id) FROM accounts)"
        )
    with pytest.raises(SystemExit) as broken:
        await asyncio.to_thread(main, ["check", "--no-streams"])
    assert broken.value.code == 1
    assert "the ledger does NOT balance" in capsys.readouterr().out


async def test_events_parked_before_the_kits_parking_lot_are_carried_into_it_and_applied(
    database: str, tmp_path: Path
) -> None:
    """Migration 0006: a rate change parked in the old table (the whole event, as text) is moved
    into the kit's parking lot, waiting for its placement, and applied when the placement is
    registered; the old table is gone."""
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if int(path.name[:4]) < 6:
            shutil.copy(path, tmp_path / path.name)
    await migrate(database, "budget", tmp_path)
    change = from_placements(rate_changed("P1", D(2026, 4, 11), 2000), D(2026, 4, 12), id="old-change")
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            """INSERT INTO parked_events (placement_id, event_id, event_type, event, reason, parked_at)
               VALUES ('P1', $1, $2, $3, 'placement not registered yet', $4)""",
            change.id,
            change.type,
            change.to_json().decode(),
            change.time,
        )
        await migrate(database, "budget", MIGRATIONS)
        [row] = await conn.fetch("SELECT * FROM parking_lot")
        assert (row["event_id"], row["source"], row["awaiting"], row["event_time"], row["status"]) == (
            "old-change",
            change.source,
            "placement:P1",
            change.time,
            "parked",
        )
        assert row["expires_at"] == change.time + dt.timedelta(days=30)
        assert await conn.fetchval("SELECT to_regclass('parked_events')") is None

        pool = await create_pool(database, 1, 2)
        try:
            placement = registered("P1", start=D(2026, 4, 1), rate=1000)
            await _handle(pool, D(2026, 5, 1), register_placement, from_placements(placement, D(2026, 5, 1)))
        finally:
            await pool.close()
        assert await conn.fetchval("SELECT status FROM parking_lot WHERE event_id = 'old-change'") == "applied"
        assert "2000" in await conn.fetchval("SELECT rates FROM streams WHERE id = 'placement:P1'")
    finally:
        await conn.close()
