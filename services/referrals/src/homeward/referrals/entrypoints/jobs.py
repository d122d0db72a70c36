"""Scheduled jobs. Ids are deterministic and what was done is recorded in the database, so
replicas running a job at the same moment publish each fact once.

* ``waits``: apply parked placements whose referral has arrived meanwhile, then report each
  wait threshold an open referral has reached.
* ``capacity``: publish the area totals that a concurrent change left unsettled, and triage
  again the referrals of areas where a referral and a count were handled at the same moment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import asyncpg
from homeward.contracts import Payload
from homeward.kit.clock import Clock
from homeward.kit.consumer import UnitOfWork
from homeward.kit.logging import get_logger
from homeward.kit.service import Job
from homeward.kit.topics import Topics

from ..adapters.postgres import PgCapacity, PgReferrals, pg_repositories
from ..handlers import Publish, apply_parked_placements, report_wait_breaches, settle_capacity, settle_triage
from ..settings import ReferralsSettings

SERVICE = "referrals"

log = get_logger(__name__)

Connection: TypeAlias = asyncpg.Connection  # type: ignore[type-arg]


class _Outbox:
    """Publishes through the outbox in the job's transaction, counting what was queued."""

    def __init__(self, topics: Topics, now: dt.datetime) -> None:
        self.topics = topics
        self.now = now
        self.queued = 0

    def on(self, conn: Connection, clock: Clock) -> Publish:
        uow: UnitOfWork[Any] = UnitOfWork(conn, SERVICE, clock, topics=self.topics)

        async def publish(payload: Payload, event_id: str, /, time: dt.datetime | None = None) -> bool:
            added = await uow.publish(payload, id=event_id, time=time or self.now)
            self.queued += int(added)
            return added

        return publish


async def _in_transaction(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    work: Callable[[Connection], Awaitable[int]],
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await work(conn)


def wait_breach_job(settings: ReferralsSettings) -> Job:
    topics = Topics(settings.kafka.topic_namespace)
    thresholds = settings.wait_thresholds_hours

    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        out = _Outbox(topics, clock.now())

        async def apply_one(conn: Connection) -> int:
            return await apply_parked_placements(PgReferrals(conn), out.on(conn, clock), limit=1)

        async def breaches(conn: Connection) -> int:
            return await report_wait_breaches(PgReferrals(conn), out.on(conn, clock), out.now, thresholds)

        try:
            # One parked placement per transaction, so the job never holds one referral while
            # waiting for another (which could deadlock with a consumer's batch).
            while await _in_transaction(pool, apply_one):
                pass
        except Exception:
            log.exception("applying parked placements failed; wait breaches are still reported")
        await _in_transaction(pool, breaches)
        return out.queued

    return Job(name="waits", run=run)


def capacity_job(settings: ReferralsSettings) -> Job:
    topics = Topics(settings.kafka.topic_namespace)

    async def run(pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        out = _Outbox(topics, clock.now())

        async def settle(conn: Connection) -> int:
            return await settle_capacity(PgCapacity(conn), out.on(conn, clock), out.now)

        async def triage(conn: Connection) -> int:
            return await settle_triage(pg_repositories(conn), out.on(conn, clock))

        await _in_transaction(pool, settle)
        await _in_transaction(pool, triage)
        return out.queued

    return Job(name="capacity", run=run)
