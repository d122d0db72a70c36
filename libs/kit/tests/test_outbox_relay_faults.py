"""What the relay does when Kafka refuses, on the real PostgreSQL (and Kafka where it refuses).

A record refused for its own sake is parked and the rows after it go on; anything else stops
the batch at that row, in order, and is retried. No timed assertions: every wait is bounded
only to fail instead of hanging.
"""

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
import structlog
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotEnoughReplicasError
from homeward.kit import outbox
from homeward.kit.db import create_pool, migrate
from homeward.kit.kafka import RelayProducer, make_admin
from homeward.kit.outbox import OutboxRelay, OutboxRow, PublishBlocked, Unpublishable
from homeward.testing import KafkaProbe, eventually
from prometheus_client import REGISTRY


class FakeKafka:
    """A send function that records what it was handed, in order, and answers with futures:
    settled at once unless ``hold`` is set, failed with ``fail_with[value]``, or raising
    ``raise_at[value]`` when the record is handed over."""

    def __init__(self) -> None:
        self.handed: list[bytes] = []
        self.futures: list[asyncio.Future[Any]] = []
        self.raise_at: dict[bytes, Exception] = {}
        self.fail_with: dict[bytes, Exception] = {}
        self.hold = False

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        if value in self.raise_at:
            raise self.raise_at[value]
        self.handed.append(value)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value in self.fail_with:
            future.set_exception(self.fail_with[value])
        elif not self.hold:
            future.set_result(None)
        self.futures.append(future)
        return future


async def _setup(database: str) -> asyncpg.Pool:  # type: ignore[type-arg]
    await migrate(database, "test", None)
    return await create_pool(database)


async def _queue(pool: asyncpg.Pool, topic: str, values: list[bytes]) -> None:  # type: ignore[type-arg]
    async with pool.acquire() as conn:
        await outbox.add_many(conn, [OutboxRow(topic, b"one-key", v, event_id=uuid.uuid4().hex) for v in values])


async def _rows(pool: asyncpg.Pool) -> dict[bytes, asyncpg.Record]:  # type: ignore[type-arg]
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT value, published_at, parked_at, last_error, attempts FROM outbox ORDER BY id")
    return {bytes(r["value"]): r for r in rows}


def _service() -> str:
    return f"svc-{uuid.uuid4().hex[:6]}"


def _sample(name: str, service: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service}) or 0.0


async def test_a_record_too_large_for_kafka_is_parked_and_the_rows_after_it_are_published(
    database: str, kafka: KafkaProbe
) -> None:
    pool = await _setup(database)
    topic = kafka.topics.internal("referrals")
    big = b"x" * 1_100_000  # over the producer's and the broker's 1 MB
    await _queue(pool, topic, [b"first", big, b"second", b"third"])
    producer = RelayProducer(kafka.settings, "test")
    await producer.start()
    service = _service()
    relay = OutboxRelay(pool, producer.send, restart_producer=producer.restart, service=service)
    try:
        with structlog.testing.capture_logs() as logs:
            assert await relay.drain() == 3
            assert await relay.drain() == 0  # a parked row is not tried again, nor logged again
        rows = await _rows(pool)
        assert rows[big]["parked_at"] is not None and rows[big]["published_at"] is None
        assert rows[big]["last_error"].startswith("MessageSizeTooLargeError")
        assert all(rows[v]["published_at"] is not None for v in (b"first", b"second", b"third"))
        assert (await relay.pending(), await relay.parked()) == (0, 1)
        assert _sample("homeward_outbox_parked_total", service) == 1
        parked_lines = [e for e in logs if e["event"].startswith("outbox row parked")]
        assert len(parked_lines) == 1 and parked_lines[0]["log_level"] == "error"
        assert parked_lines[0]["size"] == len(big) and parked_lines[0]["topic"] == topic

        records = await kafka.read(topic, until=lambda r: len(r) >= 3)
        assert [r.value for r in records] == [b"first", b"second", b"third"]
    finally:
        await producer.stop()
        await pool.close()


async def test_a_record_the_broker_refuses_is_parked_and_a_new_producer_publishes_the_rest(
    database: str, kafka: KafkaProbe
) -> None:
    # The client takes 50 kB, the topic takes 20 kB: the broker refuses it, which leaves the
    # idempotent producer out of sequence on that partition until it is replaced.
    pool = await _setup(database)
    topic = kafka.topics.namespace + "small-records"
    admin = make_admin(kafka.settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "20000"})])
    finally:
        await admin.close()
    big = b"y" * 50_000
    await _queue(pool, topic, [b"first", big, b"second", b"third"])
    producer = RelayProducer(kafka.settings, "test")
    await producer.start()
    relay = OutboxRelay(pool, producer.send, restart_producer=producer.restart, service=_service())
    try:
        assert await relay.drain() == 3
        rows = await _rows(pool)
        assert rows[big]["parked_at"] is not None
        assert rows[big]["last_error"].startswith("MessageSizeTooLargeError")
        assert all(rows[v]["published_at"] is not None for v in (b"first", b"second", b"third"))
        records = await kafka.read(topic, until=lambda r: len(r) >= 3)
        assert [r.value for r in records] == [b"first", b"second", b"third"]
    finally:
        await producer.stop()
        await pool.close()


@pytest.mark.parametrize(
    ("error", "when"),
    [
        (MessageSizeTooLargeError(), "handed over"),
        (Unpublishable("the send function says no"), "handed over"),
        (MessageSizeTooLargeError(), "acknowledged"),
    ],
)
async def test_a_record_refused_for_its_own_sake_does_not_hold_up_the_rows_after_it(
    database: str, error: Exception, when: str
) -> None:
    pool = await _setup(database)
    fake = FakeKafka()
    (fake.raise_at if when == "handed over" else fake.fail_with)[b"bad"] = error
    await _queue(pool, "t", [b"a", b"bad", b"b", b"c"])
    relay = OutboxRelay(pool, fake.send, service=_service())
    try:
        assert await relay.drain() == 3
        rows = await _rows(pool)
        assert rows[b"bad"]["parked_at"] is not None and rows[b"bad"]["attempts"] == 1
        assert rows[b"bad"]["last_error"].startswith(type(error).__name__)
        assert [v for v, r in rows.items() if r["published_at"] is not None] == [b"a", b"b", b"c"]
    finally:
        await pool.close()


async def test_an_invalid_topic_name_is_parked_without_waiting_for_kafka(database: str) -> None:
    pool = await _setup(database)
    fake = FakeKafka()
    async with pool.acquire() as conn:
        await outbox.add_raw(conn, "not a topic!", None, b"bad")
        await outbox.add_raw(conn, "t", None, b"good")
    relay = OutboxRelay(pool, fake.send, service=_service())
    try:
        assert await relay.drain() == 1
        assert fake.handed == [b"good"]
        assert (await _rows(pool))[b"bad"]["last_error"].startswith("InvalidTopicError")
    finally:
        await pool.close()


async def test_a_retriable_error_stops_the_batch_at_its_row_and_order_is_kept(database: str) -> None:
    pool = await _setup(database)
    fake = FakeKafka()
    fake.raise_at[b"3"] = KafkaConnectionError("broker away")
    values = [str(n).encode() for n in range(8)]
    await _queue(pool, "t", values)
    relay = OutboxRelay(pool, fake.send, service=_service())
    try:
        with pytest.raises(PublishBlocked):
            await relay.drain()
        assert fake.handed == [b"0", b"1", b"2"]  # nothing after the refused row was even handed over
        rows = await _rows(pool)
        assert [v for v, r in rows.items() if r["published_at"] is not None] == [b"0", b"1", b"2"]
        assert rows[b"3"]["last_error"].startswith("KafkaConnectionError") and rows[b"3"]["parked_at"] is None
        assert await relay.pending() == 5

        del fake.raise_at[b"3"]  # Kafka is back
        assert await relay.drain() == 5
        assert fake.handed == values
    finally:
        await pool.close()


async def test_a_retriable_failure_of_an_acknowledgement_marks_nothing_after_it(database: str) -> None:
    pool = await _setup(database)
    fake = FakeKafka()
    fake.fail_with[b"2"] = NotEnoughReplicasError()
    values = [str(n).encode() for n in range(6)]
    await _queue(pool, "t", values)
    relay = OutboxRelay(pool, fake.send, service=_service())
    try:
        with pytest.raises(PublishBlocked):
            await relay.drain()
        rows = await _rows(pool)
        assert [v for v, r in rows.items() if r["published_at"] is not None] == [b"0", b"1"]
        del fake.fail_with[b"2"]
        assert await relay.drain() == 4  # 2 to 5 again, in order (copies are dropped by event id)
        assert fake.handed[-4:] == values[2:]
    finally:
        await pool.close()


async def test_a_batch_is_handed_over_whole_before_any_acknowledgement_is_awaited(database: str) -> None:
    pool = await _setup(database)
    fake = FakeKafka()
    fake.hold = True
    await _queue(pool, "t", [str(n).encode() for n in range(50)])

    async def acknowledge_when_all_are_in() -> None:
        # Only once all 50 are handed over: a relay awaiting each record would wait for ever.
        assert await eventually(lambda: len(fake.futures) == 50, timeout=30)
        for f in fake.futures:
            f.set_result(None)

    acks = asyncio.create_task(acknowledge_when_all_are_in())
    relay = OutboxRelay(pool, fake.send, service=_service(), batch_size=50, send_timeout_s=60)
    try:
        assert await relay.drain() == 50
        await acks
    finally:
        await pool.close()


async def test_a_silent_kafka_is_an_outage_the_gauge_shows_and_nothing_is_sent_twice_meanwhile(
    database: str,
) -> None:
    # aiokafka's idempotent producer never fails a record while brokers are away: the
    # acknowledgements just do not come. The relay must see an outage there, not hang.
    pool = await _setup(database)
    fake = FakeKafka()
    fake.hold = True
    await _queue(pool, "t", [b"a", b"b", b"c"])
    service = _service()
    relay = OutboxRelay(pool, fake.send, service=service, poll_interval_s=0.05, send_timeout_s=0.2)
    task = asyncio.create_task(relay.run())
    gauge: Callable[[], float | None] = lambda: REGISTRY.get_sample_value(  # noqa: E731
        "homeward_outbox_pending", {"service": service}
    )
    try:
        assert await eventually(lambda: gauge() == 3, timeout=30)
        await _queue(pool, "t", [b"d"])
        assert await eventually(lambda: gauge() == 4, timeout=30)
        assert fake.handed == [b"a", b"b", b"c"]  # held back until the first copies settle
        assert await relay.pending() == 4

        for f in fake.futures:  # Kafka is back and acknowledges what it had
            f.set_result(None)
        fake.hold = False
        assert await eventually(lambda: gauge() == 0, timeout=30)
        assert await relay.pending() == 0
        assert fake.handed[3:] == [b"a", b"b", b"c", b"d"]  # sent again once, in order, then the new one
    finally:
        await relay.stop()
        await asyncio.wait_for(task, 30)
        await pool.close()


async def test_a_standby_relay_shows_the_backlog_too(database: str) -> None:
    pool = await _setup(database)
    await _queue(pool, "t", [b"a", b"b"])
    leader = await asyncpg.connect(database)  # another replica's relay leads, and publishes nothing
    await leader.execute("SELECT pg_advisory_lock($1)", outbox._RELAY_LOCK)
    service = _service()
    relay = OutboxRelay(pool, FakeKafka().send, service=service, poll_interval_s=0.05, gauge_interval_s=0.05)
    task = asyncio.create_task(relay.run())
    try:
        gauge = lambda: REGISTRY.get_sample_value("homeward_outbox_pending", {"service": service})  # noqa: E731
        assert await eventually(lambda: gauge() == 2, timeout=30)
        assert not relay.is_leader
    finally:
        await relay.stop()
        await asyncio.wait_for(task, 30)
        await leader.close()
        await pool.close()
