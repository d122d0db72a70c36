"""Scheduled jobs, each transaction a unit of work (``homeward.kit.uow.unit_of_work``). Ids are
deterministic and what was done is recorded in the database, so replicas running a job at the
same moment publish each fact once.

* ``waits``: retry what is parked for referrals that arrived meanwhile, then report each wait
  threshold an open referral has reached.
* ``capacity``: publish the area totals that a concurrent change left unsettled, and triage
  again the referrals of areas where a referral and a count were handled at the same moment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from homeward.kit.clock import Clock, FixedClock
from homeward.kit.logging import get_logger
from homeward.kit.service import Job
from homeward.kit.topics import Topics
from homeward.kit.uow import UnitOfWorkFactory, unit_of_work

from ..handlers import HANDLERS, report_wait_breaches, retry_arrived, settle_capacity, settle_triage
from ..ports import ReferralsUnitOfWork
from ..settings import ReferralsSettings

SERVICE = "referrals"

log = get_logger(__name__)

Work = Callable[[ReferralsUnitOfWork], Awaitable[int]]


class _Runner:
    """Runs use cases, each in a unit of work of its own, counting the events they queued."""

    def __init__(
        self,
        settings: ReferralsSettings,
        factory: UnitOfWorkFactory,
        pool: asyncpg.Pool,  # type: ignore[type-arg]
        clock: Clock,
    ) -> None:
        self.pool, self.factory, self.clock = pool, factory, clock
        self.plumbing: dict[str, Any] = {
            "topics": Topics(settings.kafka.topic_namespace),
            # What retry_parked needs: the handler table and how to dead-letter a refusal.
            "handlers": {payload.event_type(): handler for payload, handler in HANDLERS.items()},
            "dead_letter_key": settings.common.dead_letter_keys()[0],
            "parking_expiry": dt.timedelta(days=settings.parking_expiry_days),
        }
        self.queued = 0

    async def __call__(self, work: Work) -> int:
        async with unit_of_work(self.pool, self.factory, SERVICE, self.clock, **self.plumbing) as uow:
            assert isinstance(uow, ReferralsUnitOfWork)
            done = await work(uow)
        self.queued += len(uow.published)
        return done


def wait_breach_job(settings: ReferralsSettings, factory: UnitOfWorkFactory) -> Job:
    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        # One instant for the whole run: every step reports as of it.
        run_once = _Runner(settings, factory, pool, FixedClock(clock.now()))
        try:
            # One referral per transaction, so the job never holds one referral while waiting for
            # another (which could deadlock with a consumer's batch).
            while await run_once(retry_arrived):
                pass
        except Exception:
            log.exception("retrying parked events failed; wait breaches are still reported")
        await run_once(report_wait_breaches)
        return run_once.queued

    return Job(name="waits", run=run)


def capacity_job(settings: ReferralsSettings, factory: UnitOfWorkFactory) -> Job:
    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        run_once = _Runner(settings, factory, pool, FixedClock(clock.now()))
        await run_once(settle_capacity)
        await run_once(settle_triage)
        return run_once.queued

    return Job(name="capacity", run=run)
