"""Only the relay that holds the relay lock publishes, when stopping too (real PostgreSQL)."""

import asyncio
import uuid
from typing import Any

import asyncpg
from homeward.kit import outbox
from homeward.kit.db import create_pool, migrate
from homeward.kit.outbox import OutboxRelay, OutboxRow
from homeward.kit.service import ServiceDefinition, ServiceRuntime, StartupError, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.testing import KafkaProbe, eventually


class Recorder:
    """A send function that records values in order; ``gate``, when set, holds the first call
    until it is opened (``entered`` says the relay is inside a batch)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(value)
        return None


async def _queue(pool: asyncpg.Pool, values: list[bytes], topic: str = "t") -> None:  # type: ignore[type-arg]
    async with pool.acquire() as conn:
        await outbox.add_many(conn, [OutboxRow(topic, b"k", v, event_id=uuid.uuid4().hex) for v in values])


async def _lock_is_free(database: str) -> bool:
    conn = await asyncpg.connect(database)
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", outbox._RELAY_LOCK)
        if got:
            await conn.execute("SELECT pg_advisory_unlock($1)", outbox._RELAY_LOCK)
        return bool(got)
    finally:
        await conn.close()


async def test_a_relay_that_is_not_the_leader_neither_drains_nor_publishes_when_stopping(database: str) -> None:
    await migrate(database, "test", None)
    pool = await create_pool(database)
    other_replica = await asyncpg.connect(database)  # the leader, somewhere else
    await other_replica.execute("SELECT pg_advisory_lock($1)", outbox._RELAY_LOCK)
    recorder = Recorder()
    relay = OutboxRelay(pool, recorder.send, service="standby", poll_interval_s=0.05)
    try:
        await _queue(pool, [b"a", b"b", b"c"])
        assert await relay.drain() == 0
        task = asyncio.create_task(relay.run())
        await relay.stop(drain=True)
        await asyncio.wait_for(task, 30)
        assert recorder.sent == [] and await relay.pending() == 3

        await other_replica.execute("SELECT pg_advisory_unlock($1)", outbox._RELAY_LOCK)
        assert await relay.drain() == 3  # now it may: nobody else leads
        assert recorder.sent == [b"a", b"b", b"c"]
        assert await _lock_is_free(database)
    finally:
        await other_replica.close()
        await pool.close()


async def test_the_leader_publishes_what_is_committed_before_it_lets_go_of_the_lock(database: str) -> None:
    await migrate(database, "test", None)
    pool = await create_pool(database)
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    relay = OutboxRelay(pool, recorder.send, service="leader", batch_size=2, poll_interval_s=0.05)
    task = asyncio.create_task(relay.run())
    try:
        assert await eventually(lambda: relay.is_leader, timeout=30)
        await _queue(pool, [b"1", b"2"])
        await asyncio.wait_for(recorder.entered.wait(), 30)  # publishing 1 and 2, held at the gate
        await _queue(pool, [b"3", b"4", b"5"])  # committed while it publishes
        await relay.stop(drain=True)
        assert not await _lock_is_free(database)  # still the leader while it drains
        recorder.gate.set()
        await asyncio.wait_for(task, 30)
        assert recorder.sent == [b"1", b"2", b"3", b"4", b"5"]
        assert await relay.pending() == 0
        assert await _lock_is_free(database)
    finally:
        recorder.gate.set()
        await relay.stop()
        await asyncio.wait_for(task, 30)
        await pool.close()


async def _started(database: str, kafka: KafkaProbe) -> ServiceRuntime:
    settings = ServiceSettings(database_url=database, http_port=0, kafka=kafka.settings, outbox_poll_interval_s=0.1)
    definition = ServiceDefinition(
        name="budget",
        settings=settings,
        migrations=None,
        handlers={},
        subscriptions=[Subscription(services=["placements"])],
    )

    async def start() -> ServiceRuntime | None:
        runtime = ServiceRuntime(definition)
        try:
            await runtime.start()
        except StartupError:  # a busy broker may not list the new topics yet
            return None
        return runtime

    runtime = await eventually(start, timeout=120, interval=0.5)
    assert runtime is not None, "the test's topics never appeared"
    return runtime


async def test_a_stopping_service_drains_only_as_the_leader(database: str, kafka: KafkaProbe) -> None:
    topic = kafka.topics.internal("budget")
    await migrate(database, "budget", None)

    # Another replica leads: stopping publishes nothing and leaves the rows to it.
    other_replica = await asyncpg.connect(database)
    await other_replica.execute("SELECT pg_advisory_lock($1)", outbox._RELAY_LOCK)
    runtime = await _started(database, kafka)
    assert runtime.pool is not None and runtime.relay is not None
    await _queue(runtime.pool, [b"a", b"b"], topic)
    await runtime.stop()
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 2
        await other_replica.close()  # that replica is gone

        # This one leads: what is committed when it stops is published, then the lock is free.
        runtime = await _started(database, kafka)
        assert runtime.relay is not None and runtime.pool is not None
        relay = runtime.relay
        assert await eventually(lambda: relay.is_leader, timeout=30)
        await _queue(runtime.pool, [b"c"], topic)
        await runtime.stop()
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
        assert await _lock_is_free(database)
        records = await kafka.read(topic, until=lambda r: len(r) >= 3)
        assert [r.value for r in records] == [b"a", b"b", b"c"]
    finally:
        await conn.close()
