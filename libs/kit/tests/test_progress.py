"""Stall detection (homeward.kit.progress): the tracker's logic on an injected clock, /readyz and
the gauges, and what the consumer and the outbox relay tell it, on the real PostgreSQL. Nothing
here times anything: the clock moves only when a test moves it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import TopicPartition
from homeward.contracts import Event, new_event, partner_source
from homeward.contracts.events import PlacementMade
from homeward.kit import outbox
from homeward.kit.consumer import EventConsumer, InfrastructureError, Record, UnitOfWork
from homeward.kit.db import create_pool, migrate
from homeward.kit.http import build_app
from homeward.kit.outbox import OutboxRelay, OutboxRow
from homeward.kit.progress import RELAY, ProgressTracker, consumer_what, stalls
from homeward.kit.service import _ForgetRevoked
from homeward.kit.topics import Topics
from homeward.testing import eventually, sample_placement
from prometheus_client import REGISTRY


class Clock:
    """Seconds that move only when told."""

    def __init__(self, at: float = 1_800_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


def _service() -> str:
    return f"svc-{uuid.uuid4().hex[:6]}"


def tracker(clock: Clock, what: str = "consumer homeward-x", **options: Any) -> ProgressTracker:
    return ProgressTracker(options.pop("service", _service()), what, stall_after_s=60, clock=clock, **options)


def gauge(name: str, service: str, what: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": service, "what": what})


# ------------------------------------------------------------------------------- the tracker


def test_work_that_waits_without_progress_for_the_configured_time_is_stalled() -> None:
    clock = Clock()
    t = tracker(clock)
    assert t.stalled() is None and t.seconds_without_progress() == 0

    t.failed("DeadlockDetectedError: deadlock detected", waiting=["partner.X.events[0]"])
    clock.advance(59)
    assert t.stalled() is None  # not yet
    assert t.seconds_without_progress() == 59

    clock.advance(1)
    stall = t.stalled()
    assert stall is not None
    assert stall.to_json() == {
        "what": "consumer homeward-x",
        "since": "2027-01-15T08:00:00+00:00",
        "seconds_without_progress": 60.0,
        "last_error": "DeadlockDetectedError: deadlock detected",
        "waiting": ["partner.X.events[0]"],
    }

    t.failed("InfrastructureError: transient database errors for 30.0s")
    clock.advance(1)
    stall = t.stalled()
    assert stall is not None and stall.seconds == 61  # still since the first failure
    assert stall.last_error == "InfrastructureError: transient database errors for 30.0s"
    assert stall.waiting == ("partner.X.events[0]",)  # named once, kept

    t.progressed()
    assert t.stalled() is None and t.seconds_without_progress() == 0
    clock.advance(3600)
    assert t.stalled() is None  # idle for an hour: nothing waits, nothing is stalled


def test_a_batch_counts_from_when_it_began_and_progress_starts_the_wait_again() -> None:
    clock = Clock()
    t = tracker(clock)
    began = clock()
    clock.advance(45)  # 45 s of transient retries inside one batch
    t.failed("SerializationError", waiting=["t[1]"], since=began)
    clock.advance(15)
    assert t.stalled() is not None

    t.progressed()
    t.failed("SerializationError", waiting=["t[1]"])
    clock.advance(59)
    assert t.stalled() is None


def test_partitions_revoked_in_a_rebalance_no_longer_wait_here() -> None:
    clock = Clock()
    t = tracker(clock)
    t.failed("boom", waiting=["t[0]", "t[1]"])
    clock.advance(120)
    t.forget(["t[0]", "u[3]"])
    stall = t.stalled()
    assert stall is not None and stall.waiting == ("t[1]",)  # t[1] is still this replica's
    t.forget(["t[1]"])
    assert t.stalled() is None


async def test_the_rebalance_listener_forgets_revoked_partitions() -> None:
    clock = Clock()
    t = tracker(clock)
    t.failed("boom", waiting=["t[0]"])
    clock.advance(120)
    await _ForgetRevoked(t).on_partitions_revoked({TopicPartition("t", 0)})
    assert t.stalled() is None


def test_the_gauges_say_what_is_stalled_and_for_how_long() -> None:
    clock = Clock()
    service = _service()
    t = tracker(clock, RELAY, service=service)
    other = tracker(clock, consumer_what("homeward-y"), service=service)
    assert gauge("homeward_stalled", service, RELAY) == 0
    assert gauge("homeward_seconds_since_progress", service, RELAY) == 0

    t.failed("KafkaConnectionError: broker away", waiting=["outbox row 7"])
    clock.advance(90)
    assert gauge("homeward_stalled", service, RELAY) == 1
    assert gauge("homeward_seconds_since_progress", service, RELAY) == 90
    assert gauge("homeward_stalled", service, "consumer homeward-y") == 0
    assert [s.what for s in stalls([t, other])] == [RELAY]

    t.progressed()
    assert gauge("homeward_stalled", service, RELAY) == 0
    assert gauge("homeward_seconds_since_progress", service, RELAY) == 0


def test_nhs_numbers_are_redacted_from_the_last_error() -> None:
    clock = Clock()
    t = tracker(clock)
    t.failed("Rejected: patient 9990000018 unknown")
    clock.advance(60)
    stall = t.stalled()
    assert stall is not None and stall.last_error is not None and "9990000018" not in stall.last_error


# ----------------------------------------------------------------------------------- /readyz


async def test_readyz_answers_503_naming_what_is_stalled_and_200_once_it_moves() -> None:
    clock = Clock()
    t = tracker(clock, consumer_what("homeward-budget"), detail={"group": "homeward-budget", "topics": ["p.v1"]})

    async def ok() -> bool:
        return True

    app = build_app("budget", {"postgres": ok, "kafka": ok}, stalled=lambda: stalls([t]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["stalled"] == []

        t.failed("DeadlockDetectedError: deadlock detected", waiting=["p.v1[2]"])
        clock.advance(61)
        stalled = await client.get("/readyz")
        assert stalled.status_code == 503
        body = stalled.json()
        assert body["status"] == "not ready" and body["checks"] == {"postgres": True, "kafka": True}
        [stall] = body["stalled"]
        assert stall["what"] == "consumer homeward-budget"
        assert stall["group"] == "homeward-budget" and stall["topics"] == ["p.v1"]
        assert stall["waiting"] == ["p.v1[2]"]
        assert stall["last_error"] == "DeadlockDetectedError: deadlock detected"
        assert stall["since"] == "2027-01-15T08:00:00+00:00" and stall["seconds_without_progress"] == 61
        assert (await client.get("/healthz")).status_code == 200  # liveness: never restarted for it

        t.progressed()
        assert (await client.get("/readyz")).status_code == 200


# ------------------------------------------------------------------------- the consumer's batch


@pytest.fixture
async def pool(database: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[type-arg]
    (tmp_path / "0001_seen.sql").write_text("CREATE TABLE seen (placement_id text PRIMARY KEY);")
    await migrate(database, "placements", tmp_path)
    p = await create_pool(database, 1, 3)
    yield p
    await p.close()


def _placement(pid: str) -> Event[PlacementMade]:
    return new_event(sample_placement(pid), source=partner_source("RYG"))


def _records(*events: Event[Any], partition: int = 0) -> list[Record]:
    topic = Topics().partner("RYG")
    out = []
    for offset, e in enumerate(events):
        key, value, headers = e.to_kafka()
        out.append(Record(topic, partition, offset, key, value, tuple(headers)))
    return out


async def test_a_batch_rolled_back_again_and_again_stalls_its_subscription_and_a_commit_clears_it(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
) -> None:
    deadlocked = {"on": True}
    told: list[float | None] = []  # what the tracker knew at each try
    clock = Clock()
    t = tracker(clock, consumer_what("homeward-placements"))

    async def handler(e: Event[PlacementMade], uow: UnitOfWork[Any]) -> None:
        told.append(t.waiting_since)
        if deadlocked["on"]:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        await uow.conn.execute("INSERT INTO seen VALUES ($1) ON CONFLICT DO NOTHING", e.data.placement_id)

    c = EventConsumer(
        "placements",
        pool,
        {PlacementMade: handler},
        retry_backoff_s=0.001,
        transient_backoff_max_s=0.001,
        transient_retry_budget_s=0.05,
    )
    records = _records(_placement("PLC-1"), partition=4)
    began = clock()
    with pytest.raises(InfrastructureError, match="DeadlockDetectedError"):
        await c.handle_batch(records, progress=t)
    assert told[0] is None and told[1] == began  # retried as transient: told at once, not only once rewound
    assert t.stalled() is None
    clock.advance(60)
    stall = t.stalled()
    assert stall is not None
    assert stall.since == began and stall.waiting == ("partner.RYG.events[4]",)
    assert stall.last_error is not None and "DeadlockDetectedError" in stall.last_error

    deadlocked["on"] = False  # the fault is gone: the redelivered batch commits
    result = await c.handle_batch(records, progress=t)
    assert result.handled == 1 and t.stalled() is None


async def test_a_dead_lettered_record_is_progress(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    async def handler(e: Event[PlacementMade], uow: UnitOfWork[Any]) -> None:
        raise ValueError("a defect")

    clock = Clock()
    t = tracker(clock)
    t.failed("earlier", waiting=["partner.RYG.events[0]"])
    clock.advance(600)
    c = EventConsumer("placements", pool, {PlacementMade: handler}, retry_backoff_s=0.001)
    result = await c.handle_batch(_records(_placement("PLC-BAD")), progress=t)
    assert [reason for _, reason in result.dead_lettered] == ["handler-failed"]
    assert t.stalled() is None


# --------------------------------------------------------------------------------- the relay


class Kafka:
    """A send function that refuses with a retriable error while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.sent: list[bytes] = []

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        if self.down:
            raise KafkaConnectionError("broker away")
        self.sent.append(value)


async def _queue(pool: asyncpg.Pool, values: list[bytes]) -> None:  # type: ignore[type-arg]
    async with pool.acquire() as conn:
        await outbox.add_many(conn, [OutboxRow("t", b"k", v, event_id=uuid.uuid4().hex) for v in values])


async def test_the_leading_relay_with_rows_it_cannot_publish_is_stalled_until_they_go_out(database: str) -> None:
    await migrate(database, "test", None)
    pool = await create_pool(database)
    kafka, clock = Kafka(), Clock()
    t = tracker(clock, RELAY)
    relay = OutboxRelay(pool, kafka.send, service=t.service, poll_interval_s=0.05, progress=t)
    await _queue(pool, [b"a", b"b"])
    task = asyncio.create_task(relay.run())
    try:
        assert await eventually(lambda: t.waiting_since is not None, timeout=30)  # a batch failed
        assert t.stalled() is None
        clock.advance(60)
        stall = t.stalled()
        assert stall is not None and relay.is_leader
        assert stall.what == "outbox relay"
        assert stall.last_error is not None and stall.last_error.startswith("KafkaConnectionError")
        assert "broker away" in stall.last_error
        assert stall.waiting[0].startswith("outbox row ")

        kafka.down = False
        assert await eventually(lambda: t.stalled() is None, timeout=30)
        assert kafka.sent == [b"a", b"b"]
        clock.advance(3600)
        assert t.stalled() is None  # nothing pending: idle
    finally:
        await relay.stop()
        await asyncio.wait_for(task, 30)
        await pool.close()


async def test_a_standby_relay_is_never_stalled(database: str) -> None:
    await migrate(database, "test", None)
    pool = await create_pool(database)
    leader = await asyncpg.connect(database)  # another replica leads
    await leader.execute("SELECT pg_advisory_lock($1)", outbox._RELAY_LOCK)
    kafka, clock = Kafka(), Clock()
    t = tracker(clock, RELAY)
    t.failed("from when this replica led", waiting=["outbox row 1"])
    relay = OutboxRelay(pool, kafka.send, service=t.service, poll_interval_s=0.05, progress=t)
    await _queue(pool, [b"a"])
    task = asyncio.create_task(relay.run())
    try:
        assert await eventually(lambda: t.waiting_since is None, timeout=30)  # standing by
        clock.advance(3600)
        assert t.stalled() is None and not relay.is_leader and await relay.pending() == 1
    finally:
        await relay.stop()
        await asyncio.wait_for(task, 30)
        await leader.close()
        await pool.close()
