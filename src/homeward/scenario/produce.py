"""Producing many events onto Kafka quickly, in order per key.

What made the scenario slow to produce (about 550 events/s for the national scenario) was
not the sending itself but waiting: the first record for each of ~280 partner topics waited
for its own metadata request, and the first records for freshly created partitions were
refused ("not leader") and retried after a back-off. :func:`produce` asks for the metadata
of every topic at once and waits until each partition has a leader, then hands the records
to the producer without waiting for each acknowledgement (a window of outstanding sends;
the producer batches them per partition with ``linger_ms``). The producer is idempotent
(``acks=all``), so records keep their order per partition, hence per key, even when a
batch is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from homeward.contracts import Event, Payload
    from homeward.kit.settings import KafkaSettings

# Outstanding sends: enough to keep the producer's batches full, few enough that a broker
# outage does not pile up unbounded memory in this process.
WINDOW = 20_000


@dataclass(frozen=True)
class Produced:
    """What :func:`produce` did: how many records, how long it took (first send to last
    acknowledgement) and, when asked, each record's timestamp as the broker stored it
    (seconds since the epoch, in the order of the items)."""

    count: int
    seconds: float
    timestamps: array[float] | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def bulk_producer(settings: KafkaSettings, name: str = "cli") -> AIOKafkaProducer:
    """An idempotent ``acks=all`` producer tuned for many small records: it waits a little
    to fill batches and allows larger ones than the default 16 KiB."""
    from aiokafka import AIOKafkaProducer
    from homeward.kit.kafka import client_options

    return AIOKafkaProducer(
        client_id=f"{settings.client_id_prefix}-{name}",
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
        **client_options(settings),
    )


async def wait_for_leaders(producer: AIOKafkaProducer, topics: Sequence[str], timeout: float = 60.0) -> None:
    """Fetch the metadata of every topic in one go and wait until each of their partitions
    has a leader, so that no first send waits on its own metadata request or is refused by a
    partition still being created."""
    from aiokafka.errors import KafkaTimeoutError
    from aiokafka.structs import TopicPartition

    client = producer.client
    for topic in topics:
        client.add_topic(topic)
    deadline = time.monotonic() + timeout
    while True:
        await client.force_metadata_update()
        cluster = client.cluster
        waiting = []
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if not partitions or any(
                (cluster.leader_for_partition(TopicPartition(topic, p)) or -1) < 0 for p in partitions
            ):
                waiting.append(topic)
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise KafkaTimeoutError(f"no leader after {timeout:.0f}s for {', '.join(sorted(waiting)[:5])}...")
        await asyncio.sleep(0.1)


async def produce(
    settings: KafkaSettings,
    items: Sequence[tuple[str, Event[Payload]]],
    *,
    on_progress: Callable[[int], Any] | None = None,
    record_times: bool = False,
    window: int = WINDOW,
    producer: AIOKafkaProducer | None = None,
) -> Produced:
    """Produce ``(topic, event)`` items in their order; returns once every record is
    acknowledged. ``on_progress(n)`` is called as records are acknowledged (n new ones);
    ``record_times`` keeps each record's broker timestamp; ``producer``, a started producer
    to use (it is left running), else one is made and closed here."""
    # Freshly created topics answer "not leader" until their leaders are elected; the
    # producer retries by itself, so its warnings would only alarm the person watching.
    logging.getLogger("aiokafka.producer").setLevel(logging.ERROR)
    own = producer is None
    if producer is None:
        producer = bulk_producer(settings)
        await producer.start()
    times = array("d", bytes(8 * len(items))) if record_times else None
    try:
        await wait_for_leaders(producer, sorted({topic for topic, _ in items}))
        pending: deque[tuple[int, asyncio.Future[Any]]] = deque()
        acked = 0

        def acknowledged(i: int, fut: asyncio.Future[Any]) -> None:
            meta = fut.result()  # raises if the record could not be delivered
            if times is not None:
                times[i] = meta.timestamp / 1000

        async def settle(keep: int) -> None:
            """Take the acknowledged records off the head of the window; wait for the oldest
            ones while more than ``keep`` are outstanding."""
            nonlocal acked
            done = 0
            while pending and (len(pending) > keep or pending[0][1].done()):
                i, fut = pending.popleft()
                await fut
                acknowledged(i, fut)
                done += 1
            acked += done
            if on_progress is not None and done:
                on_progress(done)

        start = time.perf_counter()
        for i, (topic, event) in enumerate(items):
            key, value, headers = event.to_kafka()
            # send() only appends to the partition's batch (it waits if that batch is full);
            # the acknowledgements are collected later, in order.
            pending.append((i, await producer.send(topic, value=value, key=key, headers=headers)))
            if len(pending) >= window:
                await settle(window // 2)
            elif i % 1000 == 999:
                await settle(window)
        await settle(0)
        return Produced(acked, time.perf_counter() - start, times)
    finally:
        if own:
            await producer.stop()


async def send_scenario(
    sc: Any,
    settings: KafkaSettings,
    *,
    on_progress: Callable[[int], Any] | None = None,
    record_times: bool = False,
) -> Produced:
    """Create the scenario's partner topics (and any declared topic missing) in
    ``settings.topic_namespace``, then produce its events onto them."""
    from homeward.kit.kafka import ensure_topics
    from homeward.kit.topics import Topics

    topics = Topics(settings.topic_namespace)
    await ensure_topics(settings, topics.declared(tuple(sc.partners)))
    return await produce(
        settings, [(topics.partner(p), e) for p, e in sc.events], on_progress=on_progress, record_times=record_times
    )
