"""Quiet outages and quiet starts: the rate limiter and the Kafka client's log filter."""

import asyncio
import io
import json
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, NotLeaderForPartitionError, UnknownTopicOrPartitionError
from homeward.kit.logging import KafkaClientFilter, RateLimiter, configure_logging
from homeward.testing import Infra, new_namespace


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_repeated_message_passes_once_per_interval_with_the_count_held_back() -> None:
    clock = Clock()
    limiter = RateLimiter(30, clock=clock)
    assert limiter.hit("kafka down") == 0
    assert [limiter.hit("kafka down") for _ in range(99)] == [None] * 99
    assert limiter.hit("database down") == 0  # another message has its own count
    clock.now += 30
    assert limiter.hit("kafka down") == 99
    assert limiter.hit("kafka down") is None


def test_the_limiter_logs_through_structlog_with_the_suppressed_count() -> None:
    clock = Clock()
    lines: list[tuple[str, dict[str, Any]]] = []

    class Logger:
        def warning(self, event: str, **fields: Any) -> None:
            lines.append((event, fields))

    limiter = RateLimiter(10, clock=clock)
    for _ in range(5):
        limiter.log(Logger(), "warning", "relay error", key="ConnectionError", pending=3)
    clock.now += 10
    limiter.log(Logger(), "warning", "relay error", key="ConnectionError", pending=4)
    assert lines == [("relay error", {"pending": 3}), ("relay error", {"pending": 4, "suppressed": 4})]


def _record(name: str, level: int, msg: str, *args: Any) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_transient_kafka_errors_are_info_while_starting_and_warnings_afterwards() -> None:
    logging.getLogger().setLevel(logging.INFO)
    clock = Clock()
    f = KafkaClientFilter(every_s=0, starting_s=60, clock=clock)

    def level(record: logging.LogRecord) -> str | None:
        return record.levelname if f.filter(record) else None

    not_leader = NotLeaderForPartitionError("TopicPartition(topic='t', partition=4)")
    fetch = "Failed fetch offsets from %s: %s"
    assert level(_record("aiokafka.consumer.fetcher", logging.ERROR, fetch, 1, not_leader)) == "INFO"
    not_found = "Topic %s not found in cluster metadata"
    assert level(_record("aiokafka.cluster", logging.ERROR, not_found, "t")) == "INFO"
    metadata = "Error fetching metadata for topic %s: %s"
    assert level(_record("aiokafka.cluster", logging.ERROR, metadata, "t", UnknownTopicOrPartitionError)) == "INFO"
    down = "Unable connect to node with id %s: %s"
    assert level(_record("aiokafka", logging.ERROR, down, 1, KafkaConnectionError())) == "ERROR"  # a real fault

    clock.now += 60  # started
    assert level(_record("aiokafka.consumer.fetcher", logging.ERROR, fetch, 1, not_leader)) == "WARNING"
    assert level(_record("aiokafka.cluster", logging.ERROR, not_found, "t")) == "ERROR"
    assert level(_record("homeward.kit.outbox", logging.ERROR, "mine, untouched")) == "ERROR"


def _capture(**kwargs: Any) -> io.StringIO:
    configure_logging("test", "INFO", "json", **kwargs)
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    return stream


def test_the_kafka_clients_repeated_lines_appear_once_per_interval_in_the_json_log() -> None:
    stream = _capture()
    clock = Clock()
    handler = logging.getLogger().handlers[0]
    handler.filters[:] = [KafkaClientFilter(every_s=30, clock=clock)]
    aiokafka = logging.getLogger("aiokafka")
    for _ in range(200):  # what one broker away for 20 s looks like
        aiokafka.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
    clock.now += 30
    aiokafka.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["level"], line.get("suppressed")) for line in lines] == [("error", None), ("error", 199)]


async def test_clients_starting_on_topics_created_a_moment_ago_log_no_error(infra: Infra) -> None:
    """What every start of the main job does: topics created, and at once a consumer group
    reads them and a producer writes to them. Partitions have no leader yet for a moment and
    the client says so (NotLeaderForPartitionError) while it copes: that is no error."""
    stream = _capture()
    names = [f"{new_namespace()}fresh.{n}" for n in range(4)]
    admin = AIOKafkaAdminClient(**infra.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 6, 1) for name in names])
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(
        *names, group_id=f"g-{names[0]}", auto_offset_reset="earliest", **infra.client_options()
    )
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **infra.client_options())
    await asyncio.gather(consumer.start(), producer.start())
    try:
        sent = [await producer.send(name, b"v", key=str(n).encode()) for name in names for n in range(12)]
        await asyncio.wait_for(asyncio.gather(*sent), 60)
        received: list[Any] = []
        while len(received) < len(sent):
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 60)
            received += [r for records in batch.values() for r in records]
    finally:
        await asyncio.gather(consumer.stop(), producer.stop())
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert [line for line in lines if line["level"] in ("error", "critical")] == []


def test_any_loggers_exact_repeats_of_a_warning_collapse_into_one_line_with_their_count() -> None:
    from homeward.kit.logging import RepeatFilter, get_logger

    stream = _capture()
    clock = Clock()
    handler = logging.getLogger().handlers[0]
    handler.filters[:] = [RepeatFilter(every_s=30, clock=clock)]
    log = get_logger("homeward.kit.outbox")
    stdlib = logging.getLogger("faststream")
    for _ in range(500):  # a retry loop while the database is away
        log.warning("database unavailable; retrying", error="ConnectionRefusedError")
        stdlib.error("Connection lost: %s", "broker gone")
        log.info("still here")  # information is not rate-limited
    for offset in range(3):  # lines that differ in a field all pass
        log.warning("record dead-lettered", offset=offset)
    clock.now += 30
    log.warning("database unavailable; retrying", error="ConnectionRefusedError")
    stdlib.error("Connection lost: %s", "broker gone")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    warned = [(line["event"], line.get("suppressed")) for line in lines if line["level"] != "info"]
    assert warned == [
        ("database unavailable; retrying", None),
        ("Connection lost: broker gone", None),
        ("record dead-lettered", None),
        ("record dead-lettered", None),
        ("record dead-lettered", None),
        ("database unavailable; retrying", 499),
        ("Connection lost: broker gone", 499),
    ]
    assert sum(line["event"] == "still here" for line in lines) == 500


def test_configure_logging_puts_the_repeat_filter_on_the_handler() -> None:
    from homeward.kit.logging import RepeatFilter

    stream = _capture()
    assert any(isinstance(f, RepeatFilter) for f in logging.getLogger().handlers[0].filters)
    # FastStream's own lines come through the same handler, as JSON, not a stderr handler of its own.
    logging.getLogger("faststream.access.kafka").warning("Connection lost")
    assert json.loads(stream.getvalue().splitlines()[-1])["event"] == "Connection lost"
    assert logging.getLogger("faststream").handlers == []
