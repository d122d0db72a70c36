"""The accrual job: turn elapsed bed-days into spend, and realise elapsed days of savings.

Each stream is accrued in its own short transaction under the ledger write lock, so the job
never holds a consumer batch up for long. It is safe to run on several replicas at once and
after any restart: the stream's row says how far it has been accrued, and each accrual
transfer's id comes from the placement, funder and night range, so nothing posts twice.
"""

from __future__ import annotations

import asyncpg
from homeward.kit.clock import Clock
from homeward.kit.consumer import INFRA_ERRORS, UnitOfWork
from homeward.kit.logging import get_logger
from homeward.kit.service import Job
from homeward.kit.topics import Topics

from ..adapters.postgres import PgBudgetRepository
from ..handlers import Context, Rules, accrue_stream

log = get_logger(__name__)

SERVICE = "budget"


async def run_accrual(pool: asyncpg.Pool, clock: Clock, *, topics: Topics, rules: Rules, batch_size: int = 200) -> int:  # type: ignore[type-arg]
    """Accrue every stream up to ``clock.today()``; returns how many alerts it raised."""
    today, now = clock.today(), clock.now()
    after, posted, alerts, failed = "", 0, 0, 0
    while True:
        async with pool.acquire() as conn:
            due = await PgBudgetRepository(conn).streams_to_accrue(today, after, batch_size)
        if not due:
            break
        for stream_id in due:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    ctx = Context(
                        PgBudgetRepository(conn),
                        UnitOfWork(conn, SERVICE, clock, topics=topics).publish,
                        today,
                        now,
                        rules,
                    )
                    n, raised = await accrue_stream(ctx, stream_id)
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


def accrual_job(topics: Topics, rules: Rules, batch_size: int) -> Job:
    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        return await run_accrual(pool, clock, topics=topics, rules=rules, batch_size=batch_size)

    return Job("accrual", run)
