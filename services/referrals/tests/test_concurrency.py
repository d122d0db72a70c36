"""Two consumers (or replicas) handling related events at the same moment, on the real
PostgreSQL: each transaction cannot see the other's uncommitted work, and the jobs settle it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from homeward.contracts import Event, parse_json
from homeward.contracts.events import LocalCapacityChanged, LocalCapacityUnavailable, ReferralTriaged
from homeward.contracts.vocab import BedType
from homeward.kit.clock import FixedClock
from homeward.kit.db import create_pool, migrate
from homeward.kit.settings import CommonSettings, KafkaSettings
from homeward.kit.topics import Topics
from homeward.kit.uow import unit_of_work
from homeward.referrals.domain.model import Placement
from homeward.referrals.entrypoints.app import MIGRATIONS, unit_of_work_factory
from homeward.referrals.entrypoints.jobs import capacity_job, wait_breach_job
from homeward.referrals.handlers import HANDLERS
from homeward.referrals.ports import ReferralsUnitOfWork
from homeward.referrals.settings import ReferralsSettings

from .factories import KEY, T0, beds, from_partner, from_placements, referral, registered

H = dt.timedelta(hours=1)
TOPICS = Topics("t.")
SETTINGS = ReferralsSettings(
    kafka=KafkaSettings(topic_namespace="t."),
    common=CommonSettings(patient_ref_key=KEY),  # type: ignore[arg-type]
)
FACTORY = unit_of_work_factory(SETTINGS)
TABLE = {payload.event_type(): handler for payload, handler in HANDLERS.items()}


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[type-arg]
    await migrate(database, "referrals", MIGRATIONS)
    pool = await create_pool(database, 2, 6)
    yield pool
    await pool.close()


class Open:
    """A consumer's batch transaction, held open until ``commit``."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.tx = conn.transaction()

    async def handle(self, event: Event[Any]) -> None:
        """As the kit's consumer does: the service's unit of work, the handler, then a flush."""
        uow = FACTORY(self.conn, "referrals", FixedClock(T0 + 100 * H), cause=event, topics=TOPICS, handlers=TABLE)
        await TABLE[event.type](event, uow)
        await uow.flush()

    async def commit(self) -> None:
        await self.tx.commit()


async def begin(pool: Any) -> Open:
    conn = await pool.acquire()
    batch = Open(conn)
    await batch.tx.start()
    return batch


async def published(pool: Any, cls: type[Any]) -> list[Any]:
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT value FROM outbox WHERE event_type = $1 ORDER BY id", cls.event_type())
    return [parse_json(bytes(r["value"])).data for r in rows]


async def test_a_referral_and_its_placement_handled_at_once_are_joined_by_the_waits_job(pool: Any) -> None:
    referrals_batch, placements_batch = await begin(pool), await begin(pool)
    await referrals_batch.handle(from_partner(referral("REF-1", "QWU"), "QWU"))
    placed = registered("PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True, reason="10")
    await placements_batch.handle(from_placements(placed))
    await referrals_batch.commit()
    await placements_batch.commit()
    for batch in (referrals_batch, placements_batch):
        await pool.release(batch.conn)

    async with pool.acquire() as conn:
        parked = "SELECT count(*) FROM parking_lot WHERE status = 'parked' AND awaiting = 'referral:REF-1'"
        assert await conn.fetchval(parked) == 1, "neither could see the other"
    assert await published(pool, LocalCapacityUnavailable) == []

    job = wait_breach_job(SETTINGS, FACTORY)
    await job.run(pool, FixedClock(T0 + H))
    await job.run(pool, FixedClock(T0 + H))
    (gap,) = await published(pool, LocalCapacityUnavailable)
    assert (gap.referral_id, gap.placement_id) == ("REF-1", "PLC-1")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT placement_id FROM referrals WHERE referral_id = 'REF-1'") == "PLC-1"
        assert await conn.fetchval(parked) == 0
        assert await conn.fetchval("SELECT status FROM parking_lot") == "applied"


async def test_two_sites_of_one_area_counted_at_once_settle_to_the_right_total(pool: Any) -> None:
    first, second = await begin(pool), await begin(pool)
    await first.handle(from_partner(beds("RYG", "RYG01", "QWU", 2, T0), "RYG"))
    await second.handle(from_partner(beds("RJX", "RJX01", "QWU", 3, T0 + H), "RJX"))
    await first.commit()
    await second.commit()
    for batch in (first, second):
        await pool.release(batch.conn)
    assert [c.available_beds for c in await published(pool, LocalCapacityChanged)] == [2], "the second had to wait"

    job = capacity_job(SETTINGS, FACTORY)
    assert await job.run(pool, FixedClock(T0 + 2 * H)) == 1
    assert await job.run(pool, FixedClock(T0 + 2 * H)) == 0
    totals = [(c.area, c.available_beds, c.as_of) for c in await published(pool, LocalCapacityChanged)]
    assert totals == [("QWU", 2, T0), ("QWU", 5, T0 + H)]


async def test_a_referral_closed_meanwhile_is_not_closed_again_by_a_stale_copy(pool: Any) -> None:
    async with unit_of_work(pool, FACTORY, "referrals", FixedClock(T0), topics=TOPICS) as uow:
        assert isinstance(uow, ReferralsUnitOfWork)
        event = from_partner(referral("REF-1", "QWU"), "QWU")
        uow.cause = event
        await TABLE[event.type](event, uow)
        repo = uow.referrals
        stale, fresh = await repo.get("REF-1"), await repo.get("REF-1")
        assert stale is not None and fresh is not None
        fresh.place(_placement("PLC-1"))
        stale.place(_placement("PLC-2"))
        assert await repo.save_placement(fresh)
        assert not await repo.save_placement(stale)
        stored = await repo.get("REF-1")
        assert stored is not None and stored.placement is not None and stored.placement.placement_id == "PLC-1"


def _placement(placement_id: str) -> Placement:
    return Placement(placement_id, "REF-1", "QWU", "8HA03", "8HA0301", "QHM", BedType.PICU, dt.date(2026, 3, 4), True)


async def test_a_referral_and_a_count_for_its_time_handled_at_once_are_triaged_again_by_the_capacity_job(
    pool: Any,
) -> None:
    referral_batch, count_batch = await begin(pool), await begin(pool)
    await referral_batch.handle(from_partner(referral("REF-1", "QWU"), "QWU", time=T0))
    await count_batch.handle(from_partner(beds("RYG", "RYG01", "QWU", 2, T0 - H), "RYG"))
    await referral_batch.commit()
    await count_batch.commit()
    for batch in (referral_batch, count_batch):
        await pool.release(batch.conn)
    # Neither saw the other: the referral was triaged on nothing, and the count found no referral.
    assert [len(t.local_options) for t in await published(pool, ReferralTriaged)] == [0]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM triage_unsettled") == 1, "the one without the lock left a note"

    job = capacity_job(SETTINGS, FACTORY)
    await job.run(pool, FixedClock(T0 + 2 * H))
    await job.run(pool, FixedClock(T0 + 2 * H))  # nothing more the second time
    first, again = await published(pool, ReferralTriaged)
    assert [(o.site, o.available_beds) for o in again.local_options] == [("RYG01", 2)]
    assert again.supersedes is not None and first.supersedes is None
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM triage_unsettled") == 0
