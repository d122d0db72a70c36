"""The budget's jobs.

``accrual``: turn elapsed bed-days into spend, and realise elapsed days of savings.

Each stream is accrued in its own short unit of work (a transaction) under the ledger's locks,
so the job never holds a consumer batch up for long. It is safe to run on several replicas at
once and after any restart: the stream's row says how far it has been accrued, and each accrual
transfer's id comes from the placement, funder and night range, so nothing posts twice.
"""

from __future__ import annotations

import functools

import asyncpg
from homeward.kit.clock import Clock, FixedClock
from homeward.kit.consumer import INFRA_ERRORS
from homeward.kit.logging import get_logger
from homeward.kit.service import Job
from homeward.kit.topics import Topics
from homeward.kit.uow import unit_of_work

from ..adapters.postgres import PgBudgetRepository, PgBudgetUnitOfWork
from ..handlers import accrue_stream, check_moved_thresholds
from ..ports import BudgetUnitOfWork, Config

log = get_logger(__name__)

SERVICE = "budget"


async def run_accrual(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    clock: Clock,
    *,
    topics: Topics,
    config: Config,
    batch_size: int = 200,
) -> int:
    """Accrue every stream up to ``clock.today()``; returns how many alerts it raised."""
    # One moment for the whole run: every stream is accrued to the same day.
    run = FixedClock(clock.now())
    today = run.today()
    factory = functools.partial(PgBudgetUnitOfWork, config=config)
    after, posted, alerts, failed = "", 0, 0, 0
    while True:
        async with pool.acquire() as conn:
            due = await PgBudgetRepository(conn).streams_to_accrue(today, after, batch_size)
        if not due:
            break
        for stream_id in due:
            try:
                async with unit_of_work(pool, factory, SERVICE, run, topics=topics) as uow:
                    assert isinstance(uow, BudgetUnitOfWork)
                    n, raised = await accrue_stream(uow, stream_id)
            except INFRA_ERRORS:
                raise
            except Exception:
                # One stream that cannot be accrued must not hold up every stream after it.
                failed += 1
                log.exception("accrual failed for one stream; it is retried on the next run", stream=stream_id)
                continue
            posted += n
            alerts += raised
        after = due[-1]
    if posted or failed:
        log.info("accrual run", transfers=posted, failed_streams=failed, today=today.isoformat())
    return alerts


async def run_thresholds(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    clock: Clock,
    *,
    topics: Topics,
    config: Config,
    batch_size: int = 100,
) -> int:
    """Check the thresholds of every commissioner and year whose forecast moved since they were
    last checked (handlers mark them as they post); how many alerts it raised. Each batch is a
    unit of work of its own, under those commissioners' locks."""
    factory = functools.partial(PgBudgetUnitOfWork, config=config)
    checked, alerts = 0, 0
    while True:
        async with unit_of_work(pool, factory, SERVICE, clock, topics=topics) as uow:
            assert isinstance(uow, BudgetUnitOfWork)
            n, raised = await check_moved_thresholds(uow, batch_size)
        if n == 0:
            break
        checked, alerts = checked + n, alerts + raised
    if alerts:
        log.info("budget thresholds checked", commissioner_years=checked, alerts=alerts)
    return alerts


def thresholds_job(topics: Topics, config: Config) -> Job:
    """``thresholds``: budget alerts judged on the ledger as it stands, every scheduler interval
    (``HOMEWARD_BUDGET_SCHEDULER_INTERVAL_S``, 30 s), not after each event (docs/budget.md)."""

    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        return await run_thresholds(pool, clock, topics=topics, config=config)

    return Job("thresholds", run)


def accrual_job(topics: Topics, config: Config, batch_size: int) -> Job:
    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        return await run_accrual(pool, clock, topics=topics, config=config, batch_size=batch_size)

    return Job("accrual", run)
