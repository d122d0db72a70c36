"""The kit's unit of work and parking lot against the real PostgreSQL, and through the kit's
runtime on the real Kafka: a service names its repositories in a subclass, handlers are
``(event, uow)``, aggregates record events that commit with the transaction, and an event that
needs an aggregate not yet seen is parked, retried when it appears, dead-lettered when refused
or expired, and listed for ops."""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from homeward.contracts import Event, new_event, parse_kafka, partner_source
from homeward.contracts.events import LocalCapacityChanged, PlacementEnded, PlacementMade
from homeward.contracts.vocab import BedType, EndReason
from homeward.kit import parking
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import DLQ_HEADER_PREFIX, Rejected
from homeward.kit.db import create_pool, migrate
from homeward.kit.outbox import decode_headers
from homeward.kit.service import ServiceDefinition, ServiceRuntime, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.kit.topics import Topics
from homeward.kit.uow import Aggregate, Repository, UnitOfWork, handler_table, unit_of_work
from homeward.testing import KafkaProbe, eventually, new_ods, ops_headers, sample_placement

NOW = dt.datetime(2026, 10, 2, 9, 0, tzinfo=dt.UTC)
TABLE = "CREATE TABLE beds (area text PRIMARY KEY, free int NOT NULL);"


@dataclass
class Ward(Aggregate):
    """A tiny aggregate: free beds in an area, which records LocalCapacityChanged as it changes."""

    area: str
    free: int

    def set_free(self, free: int, at: dt.datetime) -> None:
        self.free = free
        self.record_event(
            LocalCapacityChanged(area=self.area, bed_type=BedType.PICU, available_beds=free, as_of=at),
            id=f"cap-{self.area}-{free}",
            time=at,
        )


class Wards(Repository):
    def __init__(self, conn: asyncpg.Connection) -> None:  # type: ignore[type-arg]
        self.conn = conn

    async def get(self, area: str) -> Ward | None:
        row = await self.conn.fetchrow("SELECT * FROM beds WHERE area = $1", area)
        return self.track(Ward(row["area"], row["free"])) if row else None

    async def add(self, ward: Ward) -> None:
        await self.conn.execute("INSERT INTO beds VALUES ($1, $2)", ward.area, ward.free)
        self.track(ward)

    async def save(self, ward: Ward) -> None:
        await self.conn.execute("UPDATE beds SET free = $2 WHERE area = $1", ward.area, ward.free)


class WardsUnitOfWork(UnitOfWork[Any]):
    def __init__(self, conn: asyncpg.Connection, *args: Any, beds: int = 3, **kwargs: Any) -> None:  # type: ignore[type-arg]
        super().__init__(conn, *args, **kwargs)
        self.wards = Wards(conn)
        self.beds = beds


async def made(event: Event[PlacementMade], uow: WardsUnitOfWork) -> None:
    ward = Ward(event.data.provider_site, 0)
    await uow.wards.add(ward)
    ward.set_free(uow.beds, event.time)
    await uow.wards.save(ward)
    await uow.retry_parked(f"ward:{ward.area}")


async def ended(event: Event[PlacementEnded], uow: WardsUnitOfWork) -> None:
    area = event.data.placement_id  # in this tiny service a placement id names the ward
    ward = await uow.wards.get(area)
    if ward is None:
        await uow.park(event, awaiting=f"ward:{area}", reason="ward-unknown")
        return
    if event.data.end_reason is EndReason.DIED:
        raise Rejected("refused", "this handler refuses deaths, to show a refusal when retried")
    ward.set_free(ward.free + 1, event.time)
    await uow.wards.save(ward)


HANDLERS = {PlacementMade.event_type(): made, PlacementEnded.event_type(): ended}


def _made(site: str, at: dt.datetime, org: str = "05A") -> Event[Any]:
    data = sample_placement(f"PLC-{site}", provider_site=site, commissioner=org)
    return new_event(data, source=partner_source(org), id=f"made-{site}", time=at)


def _ended(site: str, reason: EndReason, at: dt.datetime, n: int = 1, org: str = "05A") -> Event[Any]:
    data = PlacementEnded(placement_id=site, end_date=at.date(), end_reason=reason)
    return new_event(data, source=partner_source(org), id=f"ended-{site}-{n}", time=at)


async def _outbox(conn: asyncpg.Connection) -> list[asyncpg.Record]:  # type: ignore[type-arg]
    return await conn.fetch("SELECT topic, event_id, value, headers FROM outbox ORDER BY id")


async def _setup(tmp_path: Path, database: str) -> asyncpg.Pool:  # type: ignore[type-arg]
    (tmp_path / "0001_beds.sql").write_text(TABLE)
    await migrate(database, "referrals", tmp_path)
    return await create_pool(database)


async def test_recorded_events_commit_with_the_transaction_or_not_at_all(tmp_path: Path, database: str) -> None:
    pool = await _setup(tmp_path, database)
    factory = functools.partial(WardsUnitOfWork, beds=5)
    try:
        async with unit_of_work(pool, factory, "referrals", FixedClock(NOW)) as uow:
            await made(_made("RYG01", NOW - dt.timedelta(days=3)), uow)  # type: ignore[arg-type]
        try:
            async with unit_of_work(pool, factory, "referrals", FixedClock(NOW)) as uow:
                await made(_made("RYG02", NOW), uow)  # type: ignore[arg-type]
                raise RuntimeError("a later step fails")
        except RuntimeError:
            pass
        async with pool.acquire() as conn:
            rows = await _outbox(conn)
            beds = await conn.fetch("SELECT area FROM beds")
    finally:
        await pool.close()
    assert [r["area"] for r in beds] == ["RYG01"]
    assert [r["event_id"] for r in rows] == ["cap-RYG01-5"]
    event = json.loads(rows[0]["value"])
    # Published by the unit of work on the service's own topic, dated when the fact happened.
    assert rows[0]["topic"] == Topics().internal("referrals")
    assert event["data"]["available_beds"] == 5
    assert event["time"].startswith("2026-09-29T09:00:00")


async def test_a_caused_event_is_dated_by_its_cause_unless_it_says_otherwise(tmp_path: Path, database: str) -> None:
    pool = await _setup(tmp_path, database)
    cause = _made("RYG03", NOW - dt.timedelta(days=40))
    try:
        async with pool.acquire() as conn, conn.transaction():
            uow = UnitOfWork(conn, "referrals", FixedClock(NOW), cause=cause)
            payload = LocalCapacityChanged(area="RYG03", bed_type=BedType.PICU, available_beds=1, as_of=NOW)
            await uow.publish(payload, id="by-cause")
            await uow.publish(payload, id="stated", time=NOW - dt.timedelta(days=1))
            job = UnitOfWork(conn, "referrals", FixedClock(NOW))
            await job.publish(payload, id="by-job")
            rows = {r["event_id"]: json.loads(r["value"])["time"] for r in await _outbox(conn)}
    finally:
        await pool.close()
    assert rows["by-cause"].startswith("2026-08-23T09:00:00")
    assert rows["stated"].startswith("2026-10-01T09:00:00")
    assert rows["by-job"].startswith("2026-10-02T09:00:00")


async def test_parked_events_are_retried_refused_or_expired_and_each_ends_once(tmp_path: Path, database: str) -> None:
    pool = await _setup(tmp_path, database)
    clock = FixedClock(NOW)
    factory = functools.partial(WardsUnitOfWork, handlers=HANDLERS, dead_letter_key=b"k" * 32)
    factory = functools.partial(factory, parking_expiry=dt.timedelta(days=30))
    early = NOW - dt.timedelta(days=2)
    try:
        async with unit_of_work(pool, factory, "referrals", clock) as uow:
            # Two facts about ward RYG04 before it exists (one the handler will refuse) and one
            # about RYG05, which never comes.
            for event in (
                _ended("RYG04", EndReason.DISCHARGED_HOME, early, 1),
                _ended("RYG04", EndReason.DIED, early, 2),
                _ended("RYG05", EndReason.DISCHARGED_HOME, early, 3),
            ):
                uow.cause = event
                await ended(event, uow)  # type: ignore[arg-type]
            # A redelivery parks nothing new.
            uow.cause = _ended("RYG04", EndReason.DISCHARGED_HOME, early, 1)
            assert not await uow.park(uow.cause, awaiting="ward:RYG04", reason="ward-unknown")
        async with pool.acquire() as conn:
            waiting, counts = await parking.listing(conn)
        assert counts["parked"] == 3 and {p.awaiting for p in waiting} == {"ward:RYG04", "ward:RYG05"}
        assert all(p.reason == "ward-unknown" and p.expires_at == NOW + dt.timedelta(days=30) for p in waiting)

        async with unit_of_work(pool, factory, "referrals", clock) as uow:
            uow.cause = _made("RYG04", NOW)
            await made(uow.cause, uow)  # type: ignore[arg-type]
        async with pool.acquire() as conn:
            free = await conn.fetchval("SELECT free FROM beds WHERE area = 'RYG04'")
            entries, counts = await parking.listing(conn, statuses=parking.STATUSES)
        assert free == 3 + 1  # the discharge was applied when the ward appeared
        status = {p.event_id: p.status for p in entries}
        assert status == {"ended-RYG04-1": "applied", "ended-RYG04-2": "rejected", "ended-RYG05-3": "parked"}

        async with pool.acquire() as conn:  # the consumer's claim of the event it parked
            await conn.execute(
                "INSERT INTO inbox (consumer, source, event_id, event_type) VALUES ('referrals', $1, $2, 'x')",
                partner_source("05A"),
                "ended-RYG05-3",
            )
        later = FixedClock(NOW + dt.timedelta(days=31))
        assert await parking.expire(pool, service="referrals", clock=later, topics=Topics(), dead_letter_key=None) == 1
        assert await parking.expire(pool, service="referrals", clock=later, topics=Topics(), dead_letter_key=None) == 0
        async with pool.acquire() as conn:
            entries, counts = await parking.listing(conn, statuses=parking.STATUSES)
            dead = [r for r in await _outbox(conn) if r["topic"] == Topics().dlq("referrals")]
            claims = await conn.fetchval("SELECT count(*) FROM inbox WHERE event_id = 'ended-RYG05-3'")
    finally:
        await pool.close()
    assert counts == {"parked": 0, "applied": 1, "rejected": 1, "expired": 1}
    assert claims == 0  # a replay of the dead letter is handled, not skipped as a redelivery
    reasons = {}
    for row in dead:
        headers = dict(decode_headers(row["headers"]))
        reasons[json.loads(row["value"])["id"]] = headers[DLQ_HEADER_PREFIX + "reason"].decode()
        assert headers[DLQ_HEADER_PREFIX + "awaiting"].decode().startswith("ward:")
    # Each refused or expired event is dead-lettered once, whole, with its reason.
    assert reasons == {"ended-RYG04-2": "refused", "ended-RYG05-3": parking.EXPIRED_REASON}


async def test_the_runtime_builds_the_services_unit_of_work_and_ops_see_the_parking_lot(
    tmp_path: Path, database: str, kafka: KafkaProbe
) -> None:
    (tmp_path / "0001_beds.sql").write_text(TABLE)
    settings = ServiceSettings(
        database_url=database,
        http_port=0,
        batch_timeout_ms=50,
        outbox_poll_interval_s=0.2,
        kafka=kafka.settings.model_copy(update={"metadata_max_age_ms": 1000}),
    )
    runtime = ServiceRuntime(
        ServiceDefinition(
            name="referrals",
            settings=settings,
            migrations=tmp_path,
            handlers={PlacementMade: made, PlacementEnded: ended},  # type: ignore[dict-item]
            subscriptions=[Subscription(partners=True)],
            unit_of_work=functools.partial(WardsUnitOfWork, beds=2),
        ),
        clock=FixedClock(NOW),
    )
    ods = new_ods()
    topic = kafka.topics.partner(ods)
    await kafka.create(partners=[ods])
    await runtime.start()
    try:
        ended_event = _ended("RYG06", EndReason.DISCHARGED_HOME, NOW, 7, org=ods)
        await kafka.send(topic, ended_event)
        assert runtime.server is not None
        await eventually(lambda: runtime.server.started, timeout=10)  # type: ignore[union-attr]
        port = runtime.server.servers[0].sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"

        async def parked_listed() -> bool:
            async with httpx.AsyncClient() as client:
                r = await client.get(base + "/admin/parked", headers=ops_headers())
            return r.status_code == 200 and [e["event_id"] for e in r.json()["entries"]] == ["ended-RYG06-7"]

        await eventually(parked_listed)
        async with httpx.AsyncClient() as client:
            anonymous = await client.get(base + "/admin/parked")
        assert anonymous.status_code == 401

        await kafka.send(topic, _made("RYG06", NOW, org=ods))

        async def applied() -> bool:
            conn = await asyncpg.connect(database)
            try:
                return await conn.fetchval("SELECT free FROM beds WHERE area = 'RYG06'") == 3  # type: ignore[no-any-return]
            finally:
                await conn.close()

        await eventually(applied)
        internal = await kafka.read(kafka.topics.internal("referrals"), until=lambda r: len(r) >= 2)
        assert [parse_kafka(r.value, r.headers).id for r in internal] == ["cap-RYG06-2", "cap-RYG06-3"]
    finally:
        await runtime.stop()


async def test_the_handler_table_turns_a_domain_refusal_into_a_dead_letter_reason() -> None:
    class Refused(Exception):
        def __init__(self, reason: str, message: str) -> None:
            super().__init__(message)
            self.reason, self.message = reason, message

    async def refuses(event: Event[Any], uow: Any) -> None:
        raise Refused("not-party", "05X is not party to PLC-1")

    async def breaks(event: Event[Any], uow: Any) -> None:
        raise KeyError("a defect, not a refusal")

    table = handler_table({PlacementMade: refuses, PlacementEnded: breaks}, refusals=(Refused,))
    event = _made("RYG07", NOW)
    with pytest.raises(Rejected) as refused:
        await table[PlacementMade](event, None)
    assert (refused.value.reason, refused.value.message) == ("not-party", "05X is not party to PLC-1")
    with pytest.raises(KeyError):
        await table[PlacementEnded](event, None)
