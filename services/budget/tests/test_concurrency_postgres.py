"""Two consumers (two pools, as two replicas) posting at once on the real PostgreSQL, through the
kit's EventConsumer: one batch is one transaction, so each holds its locks until it commits.

Every handler pauses after its event, inside the batch transaction, to hold each race window
open. Without the per-key locks this test fails (verified by turning ``PgBudgetRepository.lock``
into a no-op): a placement registered by both (a re-published copy) is committed twice, which
the invariant check reports, and a rate change parked by one consumer while the other registers
the placement stays parked for ever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import pytest
from homeward.budget.adapters import postgres as q
from homeward.budget.adapters.postgres import LEDGER_LOCK, PgBudgetRepository, PgBudgetUnitOfWork, lock_id
from homeward.budget.domain.calendar import fy_label
from homeward.budget.domain.locks import LockKey, LockScope
from homeward.budget.domain.position import by_programme, position
from homeward.budget.entrypoints.app import MIGRATIONS
from homeward.budget.entrypoints.jobs import run_accrual, run_thresholds
from homeward.budget.handlers import HANDLERS
from homeward.budget.ports import Config
from homeward.contracts import Event
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import EventConsumer, Record, stable_id
from homeward.kit.db import create_pool, migrate
from homeward.kit.topics import Topics

from .fakes import allocated, closed, from_partner, from_placements, rate_changed, registered

pytestmark = pytest.mark.integration
D = dt.date
TODAY = D(2026, 5, 1)
PAUSE_S = 0.3
PLACEMENTS = "homeward.placements.v1"
CONFIG = Config(thresholds_percent=(90, 100))

Handler = Callable[[Event[Any], Any], Awaitable[None]]


@pytest.fixture
async def pools(database: str) -> AsyncIterator[list[asyncpg.Pool]]:  # type: ignore[type-arg]
    await migrate(database, "budget", MIGRATIONS)
    made = [await create_pool(database, 1, 2) for _ in range(3)]
    yield made
    for p in made:
        await p.close()


def _handlers(pause_s: float) -> dict[Any, Handler]:
    """The service's handlers, each pausing after its event while the batch transaction is open."""

    def slowed(handler: Handler) -> Handler:
        async def handle(event: Event[Any], uow: Any) -> None:
            await handler(event, uow)
            await asyncio.sleep(pause_s)

        return handle

    return {payload: slowed(h) for payload, h in HANDLERS.items()}


def _consumer(pool: asyncpg.Pool, pause_s: float = PAUSE_S) -> EventConsumer:  # type: ignore[type-arg]
    return EventConsumer(
        "budget",
        pool,
        _handlers(pause_s),
        clock=FixedClock(TODAY),
        retry_backoff_s=0.05,
        unit_of_work=functools.partial(PgBudgetUnitOfWork, config=CONFIG),
    )


def _records(topic: str, events: Sequence[Event[Any]]) -> list[Record]:
    out = []
    for offset, event in enumerate(events):
        key, value, headers = event.to_kafka()
        out.append(Record(topic, 0, offset, key, value, tuple(headers)))
    return out


def _placements(*events: Event[Any]) -> list[Record]:
    return _records(PLACEMENTS, events)


async def _batch(consumer: EventConsumer, records: list[Record]) -> None:
    """Handle one batch (one transaction): every event handled, none dead-lettered."""
    result = await consumer.handle_batch(records)
    assert result.dead_lettered == [], result.dead_lettered
    assert result.handled == len(records)


async def test_two_consumers_post_at_once_for_other_and_shared_commissioners(
    pools: list[asyncpg.Pool],  # type: ignore[type-arg]
) -> None:
    one, two, jobs = pools
    a, b = _consumer(one), _consumer(two)
    day = D(2026, 4, 1)
    # Allocations for the year, one batch, before anything else.
    allocations = [from_partner(allocated(c, 10_000_000), c, day) for c in ("05A", "05H", "05X", "05Y", "05Z")]
    await _batch(a, [r for e in allocations for r in _records(f"partner.{e.data.commissioner}.events", [e])])

    # 1. Different commissioners: neither waits for the other (one after the other would take 6 pauses).
    only_x = [registered(f"X{i}", start=day, rate=1000 + i, commissioner="05X") for i in range(3)]
    only_y = [registered(f"Y{i}", start=day, rate=2000 + i, commissioner="05Y") for i in range(3)]
    started = time.monotonic()
    await asyncio.gather(
        _batch(a, _placements(*(from_placements(p, day) for p in only_x))),
        _batch(b, _placements(*(from_placements(p, day) for p in only_y))),
    )
    assert time.monotonic() - started < 5 * PAUSE_S, "consumers for different commissioners should run side by side"

    # 2. The same commissioner, a shared funder (05H), the same placement from both sides.
    p1 = registered("P1", start=day, rate=30_000, commissioner="05A", funding=[("05A", 5_000), ("05H", 5_000)])
    p2 = registered("P2", start=day, rate=30_000, commissioner="05H", funding=[("05H", 5_000), ("05Y", 5_000)])
    p7 = registered("P7", start=day, rate=20_000, commissioner="05Y")
    p9 = registered("P9", start=day, rate=15_000, commissioner="05Z")
    first = [
        from_placements(rate_changed("P7", D(2026, 4, 11), 25_000), day),  # before P7 is known: parked
        from_placements(p9, day, id="p9-registered"),
        from_placements(p1, day),
    ]
    second = [
        from_placements(p7, day),  # registers P7 while the rate change is being parked
        from_placements(p9, day, id="p9-registered-again"),  # a re-published copy: must not commit twice
        from_placements(p2, day),
    ]
    await asyncio.gather(_batch(a, _placements(*first)), _batch(b, _placements(*second)))
    async with one.acquire() as conn:
        report = await q.check(conn)
        assert report.ok, report.problems  # a placement committed twice breaks "spend + commitment = schedule"
        assert await conn.fetchval("SELECT count(*) FROM parking_lot WHERE status = 'parked'") == 0, (
            "a parked rate change was stranded"
        )

    # The thresholds job runs, as the scheduler would between these batches.
    await run_thresholds(jobs, FixedClock(TODAY), topics=Topics(), config=CONFIG)

    # 3. Closure, rate change and the accrual job at once, all touching 05H.
    await asyncio.gather(
        _batch(a, _placements(from_placements(closed("P1", D(2026, 4, 21), day), TODAY))),
        _batch(b, _placements(from_placements(rate_changed("P2", D(2026, 4, 15), 32_000), TODAY))),
        run_accrual(jobs, FixedClock(TODAY), topics=Topics(), config=CONFIG),
        run_thresholds(jobs, FixedClock(TODAY), topics=Topics(), config=CONFIG),  # beside the postings
    )
    # And once all is posted: the thresholds are judged on the ledger as it then stands.
    await run_thresholds(jobs, FixedClock(TODAY), topics=Topics(), config=CONFIG)

    async with one.acquire() as conn:
        report = await q.check(conn)
        assert report.ok, report.problems
        assert report.totals["budget"]["debits_posted"] == report.totals["budget"]["credits_posted"] > 0
        assert report.totals["budget"]["debits_pending"] == report.totals["budget"]["credits_pending"] > 0
        assert await conn.fetchval("SELECT count(*) FROM parking_lot WHERE status = 'parked'") == 0
        p7_rates = await conn.fetchval("SELECT rates FROM streams WHERE id = 'placement:P7'")
        assert "25000" in p7_rates, "the rate change parked while P7 was registered was lost"
        # P9 registered twice: committed once (one pending transfer for its one funder and year).
        commitments = await conn.fetchval(
            "SELECT count(*) FROM transfers WHERE stream_id = 'placement:P9' AND purpose = 'commitment'"
        )
        assert commitments == 1
        alerts = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM outbox")}
        repo = PgBudgetRepository(conn)
        fy = fy_label(2026)
        figures = await repo.totals([(c, fy) for c in ("05A", "05H", "05X", "05Y", "05Z")])
        for c in ("05A", "05H", "05X", "05Y", "05Z"):
            total, programmes = by_programme(figures.get((c, fy), {}))
            pos = position(await repo.balances(c, fy), c, fy)
            assert (total, programmes) == (pos.total, pos.by_programme)
    # 05H's shares of P1 and P2 (£150 a night each for the year, £109,500 of £100,000) crossed 90%
    # and 100% only together: the thresholds job, run once both were posted, saw both.
    for percent in (90, 100):
        assert stable_id("BudgetThresholdBreached", "05H", fy, "*", percent, 0) in alerts
        assert stable_id("BudgetThresholdBreached", "05A", fy, "*", percent, 0) not in alerts


async def test_a_lock_below_one_held_is_waited_for_briefly_then_refused_with_a_retryable_error(
    pools: list[asyncpg.Pool],  # type: ignore[type-arg]
) -> None:
    low, high = sorted([LockKey(LockScope.COMMISSIONER, "05A"), LockKey(LockScope.COMMISSIONER, "05H")], key=lock_id)
    one, two, _ = pools
    async with one.acquire() as holder, two.acquire() as other:
        async with holder.transaction():
            await PgBudgetRepository(holder).lock([low])
            async with other.transaction():
                repo = PgBudgetRepository(other, patience_ms=100)
                await repo.lock([high])  # above everything it holds: waited for (here, free)
                await repo.lock([high])  # held already: nothing to wait for
                started = time.monotonic()
                with pytest.raises(asyncpg.exceptions.DeadlockDetectedError, match="could deadlock"):
                    await repo.lock([low])  # below a lock it holds, and busy: refused after 100 ms
                assert time.monotonic() - started < 5

        # A rollback to a savepoint gives back the locks taken after it, and the highest it recorded.
        async with other.transaction():
            await PgBudgetRepository(other, whole_ledger_after=None, whole_after_refusal=False).lock([low])
            savepoint = other.transaction()
            await savepoint.start()
            await PgBudgetRepository(other, whole_ledger_after=None, whole_after_refusal=False).lock([high])
            assert await _locks_held(other) == {
                LEDGER_LOCK: "ShareLock",
                lock_id(low): "ExclusiveLock",
                lock_id(high): "ExclusiveLock",
            }
            await savepoint.rollback()
            assert await _locks_held(other) == {LEDGER_LOCK: "ShareLock", lock_id(low): "ExclusiveLock"}
            assert await other.fetchval("SELECT current_setting('homeward_budget.lock_high')") == str(lock_id(low))
        assert await _locks_held(other) == {}


async def test_after_a_big_batch_or_a_refusal_a_transaction_takes_the_whole_ledger(
    pools: list[asyncpg.Pool],  # type: ignore[type-arg]
) -> None:
    keys = [LockKey(LockScope.COMMISSIONER, c) for c in ("05A", "05H", "05R")]
    one, two, _ = pools
    async with one.acquire() as conn, two.acquire() as rival:

        def repo() -> PgBudgetRepository:
            return PgBudgetRepository(conn, whole_ledger_after=2, patience_ms=50)

        async def transaction(*key_sets: list[LockKey]) -> dict[int, str]:
            async with conn.transaction():
                for ks in key_sets:
                    await repo().lock(ks)
                return await _locks_held(conn)

        small = await transaction(keys[:1], keys[1:2])  # two use cases: per key
        assert small[LEDGER_LOCK] == "ShareLock" and lock_id(keys[0]) in small
        big = await transaction(keys[:1], keys[1:2], keys[2:])  # three: after it, the whole ledger
        assert big[LEDGER_LOCK] == "ShareLock"
        whole = await transaction(keys[:1])
        assert whole == {LEDGER_LOCK: "ExclusiveLock"}  # nobody else writes: no key needed
        assert (await transaction(keys[:1]))[LEDGER_LOCK] == "ShareLock"  # that one was small again

        # Refused a lock out of order: the batch's next attempt takes the whole ledger.
        low, high = sorted(keys[:2], key=lock_id)
        async with rival.transaction():
            await PgBudgetRepository(rival, whole_ledger_after=None, whole_after_refusal=False).lock([low])
            with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
                await transaction([high], [low])
        assert await transaction([high]) == {LEDGER_LOCK: "ExclusiveLock"}


async def _locks_held(conn: asyncpg.Connection) -> dict[int, str]:  # type: ignore[type-arg]
    """The bigint advisory locks this session holds, and their modes (pg_locks splits each id in two halves)."""
    rows = await conn.fetch(
        """SELECT ((classid::bigint << 32) | objid::bigint) AS k, mode FROM pg_locks
           WHERE locktype = 'advisory' AND objsubid = 1 AND pid = pg_backend_pid() AND granted"""
    )
    return {int(r["k"]): r["mode"] for r in rows}
