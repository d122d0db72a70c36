"""The outbox relay against the real PostgreSQL and Kafka."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import asyncpg
from homeward.contracts import new_event, parse_kafka, service_source
from homeward.contracts.events import LocalCapacityChanged
from homeward.kit import outbox
from homeward.kit.db import create_pool, migrate
from homeward.kit.kafka import make_producer
from homeward.kit.outbox import OutboxRelay
from homeward.testing import KafkaProbe


def _event(n: int):  # type: ignore[no-untyped-def]
    data = LocalCapacityChanged.model_validate_json(
        json.dumps({"area": "QWU", "bed_type": "picu", "available_beds": n, "as_of": "2026-01-01T00:00:00Z"})
    )
    return new_event(data, source=service_source("referrals"), id=f"e-{n}-{uuid.uuid4().hex[:6]}")


async def _relay(pool, kafka: KafkaProbe):  # type: ignore[no-untyped-def]
    producer = make_producer(kafka.settings, "test")
    await producer.start()

    async def send(topic, key, value, headers):  # type: ignore[no-untyped-def]
        return await producer.send(topic, value=value, key=key, headers=headers)

    return OutboxRelay(pool, send, service="test", poll_interval_s=0.2), producer


async def test_relay_publishes_exactly_the_committed_rows(database: str, kafka: KafkaProbe) -> None:
    await migrate(database, "test", None)
    pool = await create_pool(database)
    topic = kafka.topics.internal("referrals")
    committed, rolled_back = _event(1), _event(2)
    async with pool.acquire() as conn:
        async with conn.transaction():
            assert await outbox.add(conn, topic, committed)
        try:
            async with conn.transaction():
                await outbox.add(conn, topic, rolled_back)
                raise RuntimeError("business rule failed after the event was written")
        except RuntimeError:
            pass
        async with conn.transaction():  # the same event id is queued only once
            assert not await outbox.add(conn, topic, committed)
    relay, producer = await _relay(pool, kafka)
    try:
        assert await relay.drain() == 1
        records = await kafka.read(topic, until=lambda r: len(r) >= 1, settle=1.0)
        ids = [parse_kafka(r.value, r.headers).id for r in records]
        assert ids == [committed.id]
        assert await relay.pending() == 0
    finally:
        await producer.stop()
        await pool.close()


async def test_relay_wakes_on_notify_and_keeps_order_per_key(database: str, kafka: KafkaProbe) -> None:
    await migrate(database, "test", None)
    pool = await create_pool(database)
    topic = kafka.topics.internal("referrals")
    relay, producer = await _relay(pool, kafka)
    task = asyncio.create_task(relay.run())
    events = [_event(n) for n in range(30)]
    try:
        for e in events:
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add(conn, topic, e)
        records = await kafka.read(topic, until=lambda r: len(r) >= 30)
        by_partition: dict[int, list[int]] = {}
        for r in records:
            by_partition.setdefault(r.partition, []).append(parse_kafka(r.value, r.headers).data.available_beds)
        assert sum(len(v) for v in by_partition.values()) == 30
        # all share one key (the area), so they are on one partition, in the order written
        assert list(by_partition.values()) == [list(range(30))]
    finally:
        await relay.stop()
        await asyncio.wait_for(task, 10)
        await producer.stop()
        await pool.close()


_KILLABLE_RELAY = r"""
import asyncio, sys
from homeward.kit.db import create_pool
from homeward.kit.kafka import make_producer
from homeward.kit.outbox import OutboxRelay
from homeward.kit.settings import KafkaSettings

async def main():
    pool = await create_pool(sys.argv[1])
    producer = make_producer(KafkaSettings(), "killable")  # the connection from HOMEWARD_KAFKA_*
    await producer.start()
    sent = 0
    async def send(topic, key, value, headers):
        nonlocal sent
        fut = await producer.send(topic, value=value, key=key, headers=headers)
        await fut
        sent += 1
        print(f"sent {sent}", flush=True)
        await asyncio.sleep(0.05)
        return fut
    relay = OutboxRelay(pool, send, service="killable", batch_size=100)
    await relay.drain()
    print("done", flush=True)

asyncio.run(main())
"""


async def test_relay_killed_mid_batch_loses_no_row(database: str, kafka: KafkaProbe) -> None:
    await migrate(database, "test", None)
    pool = await create_pool(database)
    topic = kafka.topics.internal("referrals")
    events = [_event(n) for n in range(40)]
    async with pool.acquire() as conn, conn.transaction():
        for e in events:
            await outbox.add(conn, topic, e)

    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_RELAY, database],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **kafka.infra.kafka_env("homeward-referrals")},
    )
    assert proc.stdout is not None
    killed_after = None
    for line in proc.stdout:
        if line.startswith("sent 10"):
            proc.send_signal(signal.SIGKILL)
            killed_after = 10
            break
    proc.wait(timeout=30)
    assert killed_after == 10, "the relay finished before it could be killed"

    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 40
    finally:
        await conn.close()

    relay, producer = await _relay(pool, kafka)
    try:
        assert await relay.drain() == 40
        records = await kafka.read(topic, until=lambda r: len({parse_kafka(x.value, x.headers).id for x in r}) >= 40)
        ids = {parse_kafka(r.value, r.headers).id for r in records}
        assert ids == {e.id for e in events}  # every row published; the first ten at least twice
        assert len(records) >= 50
    finally:
        await producer.stop()
        await pool.close()


async def test_while_kafka_refuses_the_pending_gauge_shows_the_backlog(database: str) -> None:
    from homeward.testing import eventually
    from prometheus_client import REGISTRY

    await migrate(database, "test", None)
    pool = await create_pool(database)

    async def send(topic, key, value, headers):  # type: ignore[no-untyped-def]
        raise ConnectionError("Kafka is down")

    service = f"outage-{uuid.uuid4().hex[:6]}"
    relay = OutboxRelay(pool, send, service=service, poll_interval_s=0.1)
    try:
        async with pool.acquire() as conn:
            for n in range(3):
                await outbox.add(conn, "homeward.referrals.v1", _event(n))
        task = asyncio.create_task(relay.run())
        gauge = lambda: REGISTRY.get_sample_value("homeward_outbox_pending", {"service": service})  # noqa: E731
        assert await eventually(lambda: gauge() == 3, timeout=30)
        await relay.stop()
        await task
    finally:
        await pool.close()
