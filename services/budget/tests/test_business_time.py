"""Facts keep their business time end to end (issue 14): placements and budget as separate
services on the real Kafka and PostgreSQL, fed the same partner history twice.

* **Live**: each partner event is handled on the day it was sent, and the accrual job runs on the
  first of every month, as a service running all year would.
* **Backfill**: the whole history reaches Homeward on 2026-11-22, the placement that started on
  2026-05-01 included, sent (and stamped by its partner) only that day, as an onboarded region's
  or a late partner's history does.

A position as of any past month start, and the placement's ledger, are then the same: the
registration placements publishes says when the placement began, not when it was processed,
and the budget dates its entries by that.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from homeward.budget.entrypoints.app import build_definition as budget_definition
from homeward.budget.entrypoints.http import build_routes
from homeward.budget.settings import BudgetSettings
from homeward.contracts import Event, new_event, parse_kafka, partner_source
from homeward.contracts.events import BudgetAllocated, PlacementMade
from homeward.contracts.vocab import FundingSource, Programme
from homeward.kit.clock import FixedClock
from homeward.kit.http import build_app
from homeward.kit.service import ServiceRuntime
from homeward.placements.entrypoints.app import build_definition as placements_definition
from homeward.placements.settings import PlacementsSettings
from homeward.testing import (
    Infra,
    KafkaProbe,
    eventually,
    new_namespace,
    new_ods,
    sample_placement,
    scratch_database,
    service_tuning,
    staff_headers,
)

pytestmark = pytest.mark.integration
D = dt.date
START, SENT_LATE = D(2026, 5, 1), D(2026, 11, 22)
FY = "2026-27"


def _at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.UTC)


def _history(commissioner: str, provider: str, far_area: str, *, backfill: bool) -> list[tuple[dt.date, Event[Any]]]:
    """(day handled live, event): the same events, ids and all; only the placement's sending time
    differs, because in the backfill its partner sent it late."""
    allocation = BudgetAllocated(
        allocation_id=f"ALLOC-{commissioner}-{FY}",
        commissioner=commissioner,
        financial_year=FY,
        programme=Programme.MENTAL_HEALTH,
        amount_pence=50_000_000,
        source=FundingSource.POOLED_FUND,
    )
    made: PlacementMade = sample_placement(
        "PLC-LATE-1",
        commissioner=commissioner,
        provider=provider,
        provider_site=f"{provider}01",
        provider_site_area=far_area,
        start_date=START.isoformat(),
        daily_rate_pence=54500,
    )
    sent = SENT_LATE if backfill else START
    return [
        (
            D(2026, 3, 20),
            new_event(allocation, source=partner_source(commissioner), id="alloc", time=_at(D(2026, 3, 20))),
        ),
        (sent, new_event(made, source=partner_source(commissioner), id="made", time=_at(sent))),
    ]


async def _position(budget: ServiceRuntime, commissioner: str, as_of: dt.date) -> dict[str, Any]:
    assert budget.pool is not None
    app = build_app("budget", checks={}, routes=build_routes(budget.pool, budget.clock))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://budget", headers=staff_headers(commissioner, "finance")
    ) as client:
        r = await client.get(f"/positions/{commissioner}", params={"financial_year": FY, "as_of": as_of.isoformat()})
    assert r.status_code == 200, r.text
    body = r.json()
    return {k: v for k, v in body.items() if k.endswith("_pence")}


async def _ledger(dsn: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT kind, purpose, amount, effective_on, range_start, range_end FROM transfers
               WHERE placement_id = 'PLC-LATE-1' ORDER BY effective_on, purpose, range_start, amount"""
        )
    finally:
        await conn.close()
    return [tuple(r) for r in rows]


async def _streams(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM streams"))
    finally:
        await conn.close()


@pytest.fixture
async def databases(infra: Infra) -> AsyncIterator[list[str]]:
    async with (
        scratch_database(infra) as a,
        scratch_database(infra) as b,
        scratch_database(infra) as c,
        scratch_database(infra) as d,
    ):
        yield [a, b, c, d]


async def _run(
    infra: Infra, placements_db: str, budget_db: str, *, backfill: bool
) -> tuple[dict[dt.date, dict[str, Any]], list[tuple[Any, ...]]]:
    kafka = KafkaProbe(infra, new_namespace())
    commissioner, provider, far_area = "05A", new_ods("8"), new_ods("Q")
    await kafka.create()
    await kafka.grant_services()
    clock = FixedClock(_at(SENT_LATE if backfill else D(2026, 3, 20), 12))
    placements = ServiceRuntime(
        placements_definition(PlacementsSettings(database_url=placements_db, **service_tuning(kafka, "placements"))),
        clock=clock,
    )
    budget = ServiceRuntime(
        budget_definition(BudgetSettings(database_url=budget_db, **service_tuning(kafka, "budget"))), clock=clock
    )
    await placements.start()
    await budget.start()
    try:
        month_starts = [D(2026, m, 1) for m in range(5, 12)]
        for day, event in _history(commissioner, provider, far_area, backfill=backfill):
            if not backfill:
                # A service running all year: the accrual job ran on every month start before this day.
                for first in [m for m in month_starts if clock.today() < m <= day]:
                    clock.set(_at(first, 0))
                    await budget.run_jobs_once()
                clock.set(_at(day, 12))
            await kafka.send(kafka.topics.internal("ingress"), event)
        assert await eventually(lambda: _has_stream(budget_db), timeout=60)
        if not backfill:
            for first in [m for m in month_starts if clock.today() < m]:
                clock.set(_at(first, 0))
                await budget.run_jobs_once()
        clock.set(_at(SENT_LATE, 12))
        await budget.run_jobs_once()
        days = [D(2026, 4, 30), *month_starts, SENT_LATE]
        return {d: await _position(budget, commissioner, d) for d in days}, await _ledger(budget_db)
    finally:
        await budget.stop()
        await placements.stop()
        await kafka.close()
        await kafka.revoke_services()
        await kafka.delete_topics()


async def _has_stream(dsn: str) -> bool:
    return await _streams(dsn) == 1


async def test_a_position_as_of_a_past_day_is_the_same_whether_the_history_came_live_or_as_a_backfill(
    infra: Infra, databases: list[str]
) -> None:
    live, live_ledger = await _run(infra, databases[0], databases[1], backfill=False)
    late, late_ledger = await _run(infra, databases[2], databases[3], backfill=True)

    assert late == live
    assert late_ledger == live_ledger
    # Nothing before the start; the commitment from the day it began; May's nights spent by 1 June.
    assert live[D(2026, 4, 30)]["committed_pence"] == 0
    assert live[D(2026, 5, 1)]["committed_pence"] == 54500 * 335  # 1 May 2026 to 31 March 2027
    assert live[D(2026, 6, 1)]["spent_pence"] == 54500 * 31
    assert live[SENT_LATE]["spent_pence"] == 54500 * (SENT_LATE - START).days
    # Every entry of the placement is dated by its fact: none on the day the backfill arrived but
    # the accrual of the nights up to it.
    assert {row[3] for row in late_ledger} == {START, *(D(2026, m, 1) for m in range(6, 12)), SENT_LATE}


# ---- review alerts: dated when the review fell due, not when the scheduler ran --------------

OVERSIGHT_DUE = START + dt.timedelta(days=56)  # an adult placed out of area: every 8 weeks


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


async def _review_alerts(infra: Infra, dsn: str, *, backfill: bool, job_days: list[dt.date]) -> dict[str, Any]:
    """The placement of ``_history`` through a placements service whose review scheduler runs
    on ``job_days``: event id -> (type, time, payload) of each review alert it published."""
    kafka = KafkaProbe(infra, new_namespace())
    commissioner, provider, far_area = "05A", new_ods("8"), new_ods("Q")
    await kafka.create()
    await kafka.grant_services()
    sent, made = _history(commissioner, provider, far_area, backfill=backfill)[1]
    clock = FixedClock(_at(sent, 12))
    placements = ServiceRuntime(
        placements_definition(PlacementsSettings(database_url=dsn, **service_tuning(kafka, "placements"))),
        clock=clock,
    )
    await placements.start()
    try:
        await kafka.send(kafka.topics.internal("ingress"), made)
        assert await eventually(lambda: _counts(dsn, "SELECT count(*) FROM review_schedules", 1), timeout=60)
        for day in job_days:
            clock.set(_at(day, 12))
            await placements.run_jobs_once()
        conn = await asyncpg.connect(dsn)
        try:
            queued = int(await conn.fetchval("SELECT count(*) FROM outbox"))
        finally:
            await conn.close()
        records = await kafka.read(kafka.topics.internal("placements"), until=lambda r: len(r) >= queued, timeout=60)
    finally:
        await placements.stop()
        await kafka.close()
        await kafka.revoke_services()
        await kafka.delete_topics()
    alerts = [parse_kafka(r.value, r.headers) for r in records]
    return {
        e.id: (e.type, e.time, e.data.model_dump(mode="json"))
        for e in alerts
        if e.type in ("homeward.ReviewDueSoon.v1", "homeward.ReviewOverdue.v1")
    }


async def _counts(dsn: str, sql: str, expected: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql)) == expected
    finally:
        await conn.close()


async def test_review_alerts_are_dated_when_the_review_fell_due_whether_the_scheduler_ran_then_or_after_a_backfill(
    infra: Infra, databases: list[str]
) -> None:
    """The oversight visit due on 26 June 2026 is due soon from 12 June (14 days before), overdue
    from 27 June, at level 2 from 11 July and at level 3 from 25 July (every 14 days more). A
    scheduler that ran on each of those days and one that first saw the placement in the
    November backfill publish the level-3 alert with the same id and the same time: 25 July."""
    days = [OVERSIGHT_DUE - dt.timedelta(days=14), *(OVERSIGHT_DUE + dt.timedelta(days=n) for n in (1, 15, 29))]
    live = await _review_alerts(infra, databases[0], backfill=False, job_days=[*days, SENT_LATE])
    late = await _review_alerts(infra, databases[1], backfill=True, job_days=[SENT_LATE])

    # Each alert is dated by the day its fact began, at 00:00 UTC as every business time is.
    assert sorted((kind.split(".")[1], data.get("escalation_level"), time) for kind, time, data in live.values()) == [
        ("ReviewDueSoon", None, _midnight(D(2026, 6, 12))),
        ("ReviewOverdue", 1, _midnight(D(2026, 6, 27))),
        ("ReviewOverdue", 2, _midnight(D(2026, 7, 11))),
        ("ReviewOverdue", 3, _midnight(D(2026, 7, 25))),
    ]
    # The backfill's scheduler says only the level reached by November: the same event, time
    # included, but for how many days overdue it was when said.
    assert len(late) == 1
    (event_id, (kind, time, data)), *_ = late.items()
    assert event_id in live
    assert (kind, time) == live[event_id][:2] == ("homeward.ReviewOverdue.v1", _midnight(D(2026, 7, 25)))
    assert data["due_date"] == OVERSIGHT_DUE.isoformat() and data["days_overdue"] == (SENT_LATE - OVERSIGHT_DUE).days
