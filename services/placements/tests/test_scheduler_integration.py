"""The review scheduler against the real PostgreSQL: exactly once per due date and level, with
two replicas running at the same moment and after a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from homeward.contracts.events import PlacementMade
from homeward.contracts.identifiers import nhs_numbers_in_test_range
from homeward.kit import parking
from homeward.kit.clock import FixedClock
from homeward.kit.crypto import NhsNumberCipher
from homeward.kit.db import create_pool, migrate
from homeward.kit.pseudonym import Pseudonymiser
from homeward.kit.topics import Topics
from homeward.placements.adapters.patients import PatientKeys
from homeward.placements.entrypoints.app import MIGRATIONS
from homeward.placements.entrypoints.jobs import ReviewScheduler
from homeward.placements.ports import Config
from placements_support import KEY, Register, ended, event, handle_in_postgres, placement_made, review

TOPICS = Topics("sched.")
KEYS = PatientKeys(Pseudonymiser(KEY), NhsNumberCipher("test-nhs-number-key-" + "x" * 32))


def nhs(i: int) -> str:
    return nhs_numbers_in_test_range(1, start=500000 + i * 20)[0]


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(database, "placements", MIGRATIONS)
    p = await create_pool(database, 1, 6)
    yield p
    await p.close()


async def handle(pool: asyncpg.Pool, config: Config, e: Any, clock: FixedClock) -> None:
    await handle_in_postgres(pool, config, KEYS, e, clock, topics=TOPICS, parking_expiry=dt.timedelta(days=30))


async def outbox_counts(pool: asyncpg.Pool) -> dict[str, int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT event_type, count(*) AS n, count(DISTINCT event_id) AS ids FROM outbox
               WHERE topic = $1 GROUP BY event_type""",
            TOPICS.internal("placements"),
        )
    assert all(r["n"] == r["ids"] for r in rows)
    return {r["event_type"].split(".")[1]: int(r["n"]) for r in rows}


async def test_two_replicas_running_the_scheduler_at_once_emit_each_alert_once(
    pool: asyncpg.Pool, database: str
) -> None:
    clock = FixedClock(dt.date(2026, 1, 1))
    config = Register().config
    # Twenty adults placed out of area on 1-20 January 2026: oversight visits due 56 days later,
    # 26 February to 17 March.
    for day in range(1, 21):
        made: PlacementMade = placement_made(f"PLC-{day:02d}", nhs=nhs(day), start=f"2026-01-{day:02d}")
        await handle(pool, config, event(made), clock)
    # One visit held on time: its next visit is due 56 days after the review, not within the window.
    await handle(pool, config, event(review("PLC-01", "oversight_visit", "2026-02-20")), clock)

    # As of 10 March: due 26 Feb - 9 Mar is overdue (2-12 Jan, 11 placements, PLC-01 was visited);
    # due 10-17 Mar is due soon (13-20 Jan, 8 placements).
    clock.set(dt.date(2026, 3, 10))
    first, second = ReviewScheduler(TOPICS), ReviewScheduler(TOPICS)
    emitted = await asyncio.gather(first.run(pool, clock), second.run(pool, clock))
    assert sum(emitted) == 19
    assert await outbox_counts(pool) == {"PlacementRegistered": 20, "ReviewOverdue": 11, "ReviewDueSoon": 8}

    # A restart: a new pool and a new scheduler, as of the same day, say nothing new.
    await pool.close()
    restarted = await create_pool(database, 1, 4)
    try:
        assert await ReviewScheduler(TOPICS).run(restarted, clock) == 0
        # On 20 March, placements of 2-8 Jan (due 26 Feb - 5 Mar) are more than 14 days overdue: level 2,
        # once. 9-12 Jan stay at level 1 (nothing new); 13-20 Jan (due 10-17 Mar) become overdue: level 1.
        clock.set(dt.date(2026, 3, 20))
        again = await asyncio.gather(*(ReviewScheduler(TOPICS).run(restarted, clock) for _ in range(3)))
        assert sum(again) == 7 + 8
        assert await outbox_counts(restarted) == {
            "PlacementRegistered": 20,
            "ReviewOverdue": 11 + 7 + 8,
            "ReviewDueSoon": 8,
        }
        async with restarted.acquire() as conn:
            levels = dict(
                await conn.fetch("SELECT level, count(*) FROM review_alerts WHERE kind='overdue' GROUP BY level")
            )
        assert levels == {1: 11 + 8, 2: 7}
    finally:
        await restarted.close()


async def test_nobody_is_chased_about_a_person_discharged_before_the_scheduler_runs(pool: asyncpg.Pool) -> None:
    """Issue 13's case on the real database: a visit due on 1 August was missed, the person was
    discharged on 1 October, and a replay ran the scheduler as of 22 November. It used to say
    "level 3"; now only the placement still open is chased."""
    clock = FixedClock(dt.date(2026, 6, 6))
    config = Register().config
    for pid, i in (("PLC-GONE", 1), ("PLC-STAYS", 2)):
        await handle(pool, config, event(placement_made(pid, nhs=nhs(40 + i), start="2026-06-06")), clock)
    await handle(pool, config, event(ended("PLC-GONE", "2026-10-01", "discharged_home")), clock)

    clock.set(dt.date(2026, 11, 22))
    assert await ReviewScheduler(TOPICS).run(pool, clock) == 1
    async with pool.acquire() as conn:
        said = await conn.fetch("SELECT placement_id, kind, level FROM review_alerts ORDER BY placement_id")
    assert [tuple(r) for r in said] == [("PLC-STAYS", "overdue", 3)]
    assert (await outbox_counts(pool)).get("ReviewOverdue") == 1


async def test_events_parked_too_long_are_dead_lettered_by_the_kits_expiry_and_not_applied_later(
    pool: asyncpg.Pool,
) -> None:
    clock = FixedClock(dt.date(2026, 1, 1))
    config = Register().config
    await handle(pool, config, event(review("PLC-GHOST", "oversight_visit", "2025-12-20")), clock)

    async def expire() -> int:
        return await parking.expire(pool, service="placements", clock=clock, topics=TOPICS, dead_letter_key=None)

    async with pool.acquire() as conn:
        [entry] = await conn.fetch("SELECT awaiting, reason, status FROM parking_lot")
        assert tuple(entry) == ("placement:PLC-GHOST", "placement-unknown", "parked")
    clock.set(dt.date(2026, 1, 30))
    assert await expire() == 0
    clock.set(dt.date(2026, 1, 31))
    assert await expire() == 1
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM parking_lot") == "expired"
        assert await conn.fetch("SELECT topic FROM outbox") == [(TOPICS.dlq("placements"),)]
    # The placement arriving after all does not apply it: it waits on the dead-letter topic,
    # where ops replay it (homeward dlq).
    await handle(pool, config, event(placement_made("PLC-GHOST", start="2025-12-01")), clock)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM parking_lot") == "expired"
        assert await conn.fetchval("SELECT count(*) FROM reviews WHERE placement_id = 'PLC-GHOST'") == 0
