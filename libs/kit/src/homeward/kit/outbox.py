"""The transactional outbox, its relay, and the retention of the kit's tables.

Writers add rows in their own asyncpg transaction; a trigger NOTIFYs at commit (one
notification per INSERT statement, kit migration 0003) and wakes the relay, which also
polls as a fallback. The relay publishes committed rows in id order with an idempotent,
acks=all producer and marks them published.

Only one relay per database publishes at a time: the leader holds a session advisory lock
and publishes on that same session, so a relay that lost its session cannot go on marking
rows. The others stand by and take over if it dies. A relay that stops publishes what is
committed first only while it holds the lock; a standby just stops. This is what keeps
per-key order across replicas, rolling restarts included.

A batch is sent without waiting for each record: every record is handed to the producer,
then all acknowledgements are awaited together. What comes back decides each row, in id
order:

* acknowledged: published;
* refused by Kafka for the record's own sake (too large, an invalid topic name: see
  :func:`is_record_fault`): *parked*, with the reason in ``last_error``; it no longer holds
  up the rows after it. Parked rows wait for a person (``homeward_outbox_parked_rows``);
* anything else (broker unreachable, no leader, a missing topic, no acknowledgement within
  ``send_timeout_s``): the batch stops at that row. The rows before it are marked, nothing
  from it on is, and it is tried again later, so order is kept. Records of the stopped
  batch that Kafka takes meanwhile are published again on the retry; consumers drop the
  copies by event id (at-least-once, as everywhere else).

The leader that has rows pending and publishes (or parks) none of them for ``stall_after_s``,
because Kafka does not take them or an error keeps ending its batches, is *stalled*:
``/readyz`` answers 503 naming the "outbox relay" with the last error and the row it waits at,
and ``homeward_stalled{what="outbox relay"}`` is 1 (:mod:`homeward.kit.progress`). After an
error that cost it its session, the replica that led last goes on reporting until a batch goes
out or another replica leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka.errors import (
    CorruptRecordException,
    InvalidProducerEpoch,
    InvalidTimestampError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownProducerId,
)
from homeward.contracts import Event

from .logging import RateLimiter, get_logger
from .metrics import (
    OUTBOX_BATCH_SECONDS,
    OUTBOX_PARKED,
    OUTBOX_PARKED_ROWS,
    OUTBOX_PENDING,
    OUTBOX_PUBLISHED,
)
from .progress import ProgressTracker

CHANNEL = "homeward_outbox"  # also named in the trigger of kit migration 0003
_RELAY_LOCK = 0x4F757462  # "Outb"

log = get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]
SendFn = Callable[[str, bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[Any]]


# ---- writing ----------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxRow:
    """One record to queue with :func:`add_many`."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()
    event_id: str | None = None
    event_type: str | None = None

    @classmethod
    def of(cls, topic: str, event: Event) -> OutboxRow:  # type: ignore[type-arg]
        """A CloudEvent (structured mode) for ``topic``, keyed by its aggregate."""
        key, value, headers = event.to_kafka()
        return cls(topic, key, value, tuple(headers), event.id, event.type)


def _encode_headers(headers: Headers) -> str:
    return json.dumps([[k, v.decode("latin-1")] for k, v in headers])


async def add_raw(
    conn: asyncpg.Connection,  # type: ignore[type-arg]
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: Headers = (),
    *,
    event_id: str | None = None,
    event_type: str | None = None,
) -> bool:
    """Queue one record; False if an event with this id was already queued for this topic.

    One statement: the outbox's trigger wakes the relay at commit."""
    inserted = await conn.fetchval(
        """INSERT INTO outbox (topic, key, value, headers, event_id, event_type)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT (topic, event_id) WHERE event_id IS NOT NULL DO NOTHING
           RETURNING id""",
        topic,
        key,
        value,
        _encode_headers(headers),
        event_id,
        event_type,
    )
    return inserted is not None


async def add(conn: asyncpg.Connection, topic: str, event: Event, key_as: str | None = None) -> bool:  # type: ignore[type-arg]
    """Queue a CloudEvent (structured mode) for ``topic``, keyed by its aggregate, or by
    ``key_as`` (homeward.contracts.topics.publish_key)."""
    key, value, headers = event.to_kafka()
    if key_as is not None:
        key = key_as.encode()
    return await add_raw(conn, topic, key, value, headers, event_id=event.id, event_type=event.type)


# The ids are drawn first, sorted, and handed out by position (unnest zips its arrays), so
# the relay publishes the rows in the order given: PostgreSQL does not promise the order in
# which an INSERT ... SELECT evaluates a serial default. A row whose (topic, event_id) is
# already queued, or repeats an earlier row of the same call, is skipped; its id goes unused.
# (No joins: their row estimates for array parameters are wild enough to trigger JIT
# compilation, which cost seconds.)
_ADD_MANY = """
WITH drawn AS (
    SELECT array_agg(id ORDER BY id) AS ids FROM (
        SELECT nextval(pg_get_serial_sequence('outbox', 'id')) AS id FROM generate_series(1, $7::int)
    ) d
), added AS (
    INSERT INTO outbox (id, topic, key, value, headers, event_id, event_type)
    SELECT r.id, r.topic, r.key, r.value, r.headers::jsonb, r.event_id, r.event_type
    FROM drawn, unnest(drawn.ids, $1::text[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::text[])
         AS r(id, topic, key, value, headers, event_id, event_type)
    ORDER BY r.id
    ON CONFLICT (topic, event_id) WHERE event_id IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT (SELECT ids FROM drawn) AS ids, (SELECT array_agg(id) FROM added) AS added
"""


async def add_many(conn: asyncpg.Connection, rows: Sequence[OutboxRow]) -> list[bool]:  # type: ignore[type-arg]
    """Queue many records in one statement (one round trip, one NOTIFY).

    Returns, for each row in the order given, whether it was queued: False if an event with
    its id was already queued for its topic, or came earlier in ``rows``. Queued rows get
    ascending ids in the order given, so the relay publishes them in that order."""
    if not rows:
        return []
    result = await conn.fetchrow(
        _ADD_MANY,
        [r.topic for r in rows],
        [r.key for r in rows],
        [r.value for r in rows],
        [_encode_headers(r.headers) for r in rows],
        [r.event_id for r in rows],
        [r.event_type for r in rows],
        len(rows),
    )
    assert result is not None
    added = set(result["added"] or ())
    return [row_id in added for row_id in result["ids"]]


def decode_headers(raw: str | list[Any]) -> list[tuple[str, bytes]]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return [(k, v.encode("latin-1")) for k, v in items]


# ---- what Kafka refuses -------------------------------------------------------------------
class Unpublishable(Exception):
    """Raised by a send function for a record Kafka will never take, however often it is
    sent: the relay parks the row instead of retrying it."""


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time; the relay retries later, in order."""


# Errors about the record itself, which no retry can cure. Everything else (the broker is
# unreachable or has no leader yet, the topic does not exist yet, authorisation, a closed
# producer) stops the batch and is retried, because an operator can fix it.
RECORD_FAULTS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,  # bigger than the producer's max_request_size or the topic's max.message.bytes
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    CorruptRecordException,
    InvalidTimestampError,
    Unpublishable,
)

# The idempotent producer is out of step with the broker (after a record the broker refused,
# typically): a new producer is needed, see homeward.kit.kafka.RelayProducer.
PRODUCER_RESET_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    ProducerFenced,
)

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def is_record_fault(exc: BaseException) -> bool:
    """True for an error Kafka gives because of the record itself (see RECORD_FAULTS)."""
    return isinstance(exc, RECORD_FAULTS)


def _check_topic(topic: str) -> None:
    # The client would wait for metadata of an invalid name until it times out, then call
    # the topic unknown (a retriable error): the row would hold up the outbox forever.
    if not _TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
        raise InvalidTopicError(f"{topic!r} is not a valid Kafka topic name")


class PublishBlocked(Exception):
    """A batch stopped at a row Kafka did not take, for a reason that may pass. The rows
    before it were marked: ``published`` and ``parked`` say how many."""

    def __init__(self, error: BaseException, row_id: int | None = None, published: int = 0, parked: int = 0) -> None:
        super().__init__(_describe(error))
        self.error = error
        self.row_id = row_id
        self.published = published
        self.parked = parked


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- the relay ----------------------------------------------------------------------------
class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,  # type: ignore[type-arg]
        send: SendFn,
        *,
        service: str,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        send_timeout_s: float = 60.0,
        gauge_interval_s: float = 5.0,
        log_every_s: float = 30.0,
        restart_producer: Callable[[], Awaitable[None]] | None = None,
        progress: ProgressTracker | None = None,
    ) -> None:
        self._pool = pool
        self._send = send
        self._restart_producer = restart_producer
        self._service = service
        self._batch_size = batch_size
        self._poll = poll_interval_s
        self._send_timeout = send_timeout_s
        self._gauge_interval = gauge_interval_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._drain_on_stop = True
        self._leader = False
        # Futures of a batch that ran out of time: nothing new is sent until they settle, so
        # an outage does not pile up copies of the same rows in the producer.
        self._unsettled: list[asyncio.Future[Any]] = []
        self._quiet = RateLimiter(log_every_s)
        # Hears whether the leader publishes its pending rows (homeward.kit.progress): a batch
        # published or parked, or none pending, is progress; a batch Kafka did not take, or an
        # error while this relay led last, is not. A standby relay is never stalled.
        self.progress = progress
        self._led_last = False

    def _progressed(self) -> None:
        if self.progress is not None:
            self.progress.progressed()

    def _failed(self, error: BaseException, waiting: str | None = None) -> None:
        if self.progress is not None:
            self.progress.failed(_describe(error), waiting=(waiting,) if waiting else ())

    @property
    def is_leader(self) -> bool:
        """Whether this relay holds the relay lock (publishes) right now."""
        return self._leader

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    # -- counts, for the gauges and the tests
    async def pending(self) -> int:
        """Rows waiting to be published (parked rows are not waiting)."""
        async with self._pool.acquire() as conn:
            return int(
                await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NULL")
            )

    async def parked(self) -> int:
        async with self._pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL"))

    async def update_gauges(self) -> None:
        OUTBOX_PENDING.labels(self._service).set(await self.pending())
        OUTBOX_PARKED_ROWS.labels(self._service).set(await self.parked())

    # -- one batch
    async def _publish_batch(self, conn: asyncpg.Connection) -> tuple[int, int]:  # type: ignore[type-arg]
        """On the session that holds the relay lock: publish one batch of committed rows in id
        order. Returns (published, parked); raises PublishBlocked after marking what went through
        if the batch stopped at a row."""
        if self._unsettled:
            _, still = await asyncio.wait(self._unsettled, timeout=self._send_timeout)
            if still:
                raise PublishBlocked(KafkaUnavailable(f"{len(still)} records sent before still wait for Kafka"))
            self._unsettled = []
        async with conn.transaction():
            # FOR UPDATE without SKIP LOCKED: a row locked by anything else is waited for,
            # never jumped over, so rows cannot overtake one another.
            rows = await conn.fetch(
                """SELECT id, topic, key, value, headers, event_id, event_type FROM outbox
                   WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE""",
                self._batch_size,
            )
            if not rows:
                return 0, 0
            started = time.perf_counter()
            outcomes = await self._send_batch(rows)
            published: list[int] = []
            parked: list[tuple[asyncpg.Record, BaseException]] = []
            stop: tuple[asyncpg.Record, BaseException] | None = None
            for row, outcome in zip(rows, outcomes, strict=False):
                error = _error_of(outcome)
                if error is None:
                    published.append(row["id"])
                elif is_record_fault(error):
                    parked.append((row, error))
                else:
                    stop = (row, error)
                    break
            else:
                if len(outcomes) < len(rows):  # the time ran out while handing records over
                    stop = (rows[len(outcomes)], KafkaUnavailable(f"not sent within {self._send_timeout:g}s"))
            self._unsettled = [o for o in outcomes if isinstance(o, asyncio.Future) and not o.done()]
            for o in outcomes:  # settled failures after the stop: retrieved, so asyncio does not warn
                if isinstance(o, asyncio.Future) and o.done() and not o.cancelled():
                    o.exception()
            if published:
                await conn.execute(
                    "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
                    published,
                )
            if parked:
                await conn.execute(
                    """UPDATE outbox SET parked_at = now(), attempts = attempts + 1, last_error = p.error
                       FROM unnest($1::bigint[], $2::text[]) AS p(id, error) WHERE outbox.id = p.id""",
                    [r["id"] for r, _ in parked],
                    [_describe(e)[:2000] for _, e in parked],
                )
            if stop is not None:  # what holds the outbox up, for whoever looks at the row
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                    stop[0]["id"],
                    _describe(stop[1])[:2000],
                )
        if stop is None:
            OUTBOX_BATCH_SECONDS.labels(self._service).observe(time.perf_counter() - started)
        OUTBOX_PUBLISHED.labels(self._service).inc(len(published))
        for row, error in parked:
            OUTBOX_PARKED.labels(self._service).inc()
            log.error(
                "outbox row parked: Kafka refuses this record, so it is set aside and the rows after it go on",
                outbox_id=row["id"],
                topic=row["topic"],
                event_id=row["event_id"],
                event_type=row["event_type"],
                size=len(row["value"]),
                error=_describe(error),
            )
        if stop is not None:
            raise PublishBlocked(stop[1], stop[0]["id"], len(published), len(parked))
        return len(published), len(parked)

    async def _next_batch(self, conn: asyncpg.Connection) -> tuple[int, int]:  # type: ignore[type-arg]
        """One batch; if it stopped because the producer is out of step with the broker, with
        a new producer, once."""
        try:
            return await self._publish_batch(conn)
        except PublishBlocked as blocked:
            if self._restart_producer is None or not isinstance(blocked.error, PRODUCER_RESET_ERRORS):
                raise
            log.warning("the Kafka producer is out of step with the broker; starting a new one", error=str(blocked))
            await self._restart_producer()
            self._unsettled = []  # the old producer's records went with it
            published, parked = await self._publish_batch(conn)
            return blocked.published + published, blocked.parked + parked

    async def _send_batch(self, rows: Sequence[asyncpg.Record]) -> list[Any]:
        """Hand every row to the producer without waiting for its acknowledgement, then wait
        for all of them, within send_timeout_s. One outcome per row handed over, in order: a
        future, an exception, or None (the send function delivered it already). Stops
        handing over at the first error that is not the record's own fault."""
        outcomes: list[Any] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._send_timeout):
                for r in rows:
                    try:
                        _check_topic(r["topic"])
                        sent = await self._send(r["topic"], r["key"], bytes(r["value"]), decode_headers(r["headers"]))
                    except Exception as exc:
                        outcomes.append(exc)
                        if is_record_fault(exc):
                            continue
                        break
                    outcomes.append(asyncio.ensure_future(sent) if inspect.isawaitable(sent) else None)
                waiting = [o for o in outcomes if isinstance(o, asyncio.Future)]
                if waiting:
                    await asyncio.wait(waiting)
        return outcomes

    # -- draining
    async def _drain_on(self, conn: asyncpg.Connection) -> int:  # type: ignore[type-arg]
        total = 0
        while True:
            published, parked = await self._next_batch(conn)
            if not published and not parked:
                return total
            total += published

    async def drain(self) -> int:
        """Publish everything committed, if no other relay is the leader (this one takes the
        relay lock for the time it takes, then releases it). Returns how many rows were
        published: 0 when another relay holds the lock, since that one publishes them."""
        async with self._pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                return 0
            try:
                return await self._drain_on(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _RELAY_LOCK)

    # -- running
    async def run(self) -> None:
        """Run until stopped: stand by for the relay lock, then publish as the leader, woken by
        NOTIFY or every poll interval. The gauges are kept up to date whether or not this
        relay leads, and also while Kafka is down."""
        gauges = asyncio.create_task(self._keep_gauges(), name="outbox-gauges")
        try:
            while not self._stopping.is_set():
                try:
                    await self._run_as_leader()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the relay must outlive database outages
                    self._quiet.log(
                        log, "warning", "outbox relay error; retrying", key=type(exc).__name__, error=_describe(exc)
                    )
                    if self._led_last:  # it may be pending rows this relay cannot publish
                        self._failed(exc)
                    with contextlib.suppress(Exception):
                        await self.update_gauges()
                    await self._pause(min(5.0, self._poll * 2))
        finally:
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _keep_gauges(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.update_gauges()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: the relay's own log says so
                log.debug("outbox gauges not updated", error=_describe(exc))
            await self._pause(self._gauge_interval)

    async def _run_as_leader(self) -> None:
        conn = await self._pool.acquire()
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                self._led_last = False  # another replica leads: what waits is its to publish
                self._progressed()
                if self._stopping.is_set():
                    return
                await self._pause(self._poll)
                if self._stopping.is_set():  # a standby just stops
                    return
            self._leader = self._led_last = True
            try:
                await conn.add_listener(CHANNEL, self._on_notify)
                await self._lead(conn)
            finally:
                self._leader = False
                with contextlib.suppress(Exception):
                    await conn.remove_listener(CHANNEL, self._on_notify)
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1)", _RELAY_LOCK)
        finally:
            await self._pool.release(conn)

    async def _lead(self, conn: asyncpg.Connection) -> None:  # type: ignore[type-arg]
        failures = 0
        while True:
            if self._stopping.is_set():
                if self._drain_on_stop:
                    await self._drain_before_stopping(conn)
                return
            self._wake.clear()  # before the batch, so a NOTIFY during it is not lost
            try:
                published, parked = await self._next_batch(conn)
            except PublishBlocked as blocked:
                failures += 1
                if blocked.published or blocked.parked:
                    self._progressed()  # rows went out before it stopped: the wait starts now
                self._failed(blocked.error, f"outbox row {blocked.row_id}" if blocked.row_id is not None else None)
                pending = await self.pending()
                OUTBOX_PENDING.labels(self._service).set(pending)
                self._quiet.log(
                    log,
                    "warning",
                    "Kafka is not taking the outbox's records; they wait, in order",
                    key=type(blocked.error).__name__,
                    error=_describe(blocked.error),
                    outbox_id=blocked.row_id,
                    pending=pending,
                )
                await self._pause(min(5.0, self._poll * 2))
                continue
            self._progressed()  # published or parked some, or none are pending
            if failures:
                log.info("outbox relay publishing again", failed_attempts=failures)
                failures = 0
            if published or parked:
                continue
            OUTBOX_PENDING.labels(self._service).set(0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    async def _drain_before_stopping(self, conn: asyncpg.Connection) -> None:  # type: ignore[type-arg]
        try:
            published = await self._drain_on(conn)
        except PublishBlocked as blocked:
            log.warning(
                "stopping with outbox rows unpublished; the next leader publishes them",
                error=_describe(blocked.error),
                pending=await self.pending(),
            )
            return
        if published:
            log.info("outbox drained before stopping", published=published)

    async def stop(self, *, drain: bool = True) -> None:
        """Ask the relay to stop; await its ``run()`` task to know when it has. The leader
        first publishes what is committed (``drain``), still holding the lock, then releases
        it; a standby stops at once."""
        self._drain_on_stop = drain
        self._stopping.set()
        self._wake.set()


def _error_of(outcome: Any) -> BaseException | None:
    if outcome is None:
        return None
    if isinstance(outcome, BaseException):
        return outcome
    if not outcome.done():
        return KafkaUnavailable("not acknowledged in time")
    if outcome.cancelled():
        return KafkaUnavailable("the send was cancelled")
    return outcome.exception()  # type: ignore[no-any-return]


# ---- retention ----------------------------------------------------------------------------
# Both deletes compare with the database's clock, the one that stamped the rows, never with
# a service's injectable clock (which may run "as of" another day). SKIP LOCKED lets several
# replicas prune side by side without waiting for each other.
_PRUNE_OUTBOX = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox
    WHERE published_at < now() - $1::interval AND parked_at IS NULL
    ORDER BY published_at LIMIT $2 FOR UPDATE SKIP LOCKED)
"""
_PRUNE_INBOX = """
DELETE FROM inbox WHERE (consumer, source, event_id) IN (
    SELECT consumer, source, event_id FROM inbox
    WHERE received_at < now() - $1::interval
    ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)
"""


async def _prune(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    sql: str,
    older_than: dt.timedelta,
    batch_size: int,
    max_batches: int,
) -> int:
    total = 0
    for _ in range(max_batches):
        async with pool.acquire() as conn:
            status = await conn.execute(sql, older_than, batch_size)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < batch_size:
            break
    return total


async def prune_outbox(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    older_than: dt.timedelta,
    *,
    batch_size: int = 10_000,
    max_batches: int = 100,
) -> int:
    """Delete outbox rows published more than ``older_than`` ago, ``batch_size`` rows per
    statement (each its own transaction) and at most ``max_batches`` statements. Unpublished
    and parked rows are never deleted. Returns how many rows were deleted."""
    return await _prune(pool, _PRUNE_OUTBOX, older_than, batch_size, max_batches)


async def prune_inbox(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    older_than: dt.timedelta,
    *,
    batch_size: int = 10_000,
    max_batches: int = 100,
) -> int:
    """Delete inbox rows received more than ``older_than`` ago, as :func:`prune_outbox` does.
    An event whose inbox row is gone is no longer recognised as a resend."""
    return await _prune(pool, _PRUNE_INBOX, older_than, batch_size, max_batches)
