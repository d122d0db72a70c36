"""Consuming events: validate, authorise, de-duplicate, handle, and dead-letter.

A batch of Kafka records is handled in one database transaction. Each event runs in
its own savepoint, so one bad event is set aside without undoing the others:

* a record that breaks the contract (malformed JSON, schema violation, invalid NHS
  number, unknown type) or that a partner may not send (wrong organisation) is
  *rejected*: it goes to the dead-letter topic at once, with the reason;
* a handler that raises ``Rejected`` does the same;
* a handler that fails otherwise is retried a bounded number of times with backoff,
  then dead-lettered;
* a duplicate event id (the inbox) is acknowledged and changes nothing;
* a known event type that this service does not handle is acknowledged and skipped.

Dead letters are written to the outbox in the same transaction, so the decision to
set a message aside commits together with the rest of the batch, and the relay
publishes it to ``homeward.dlq.<service>``. Offsets are committed only after that
commit (at-least-once). When the database or Kafka itself is unreachable the batch
is not dead-lettered: it is rewound and tried again after a pause, so an outage loses
nothing and delays everything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from homeward.contracts import (
    ContractError,
    Event,
    Payload,
    caused_by,
    new_event,
    parse_kafka,
    partner_of,
    service_source,
    source_organisation,
    source_service,
)

from . import inbox, outbox
from .clock import Clock, SystemClock
from .logging import get_logger, redact_text
from .metrics import BATCH_SECONDS, DEAD_LETTERS, EVENTS_HANDLED
from .topics import Topics

log = get_logger(__name__)

P = TypeVar("P", bound=Payload)

EVENT_ID_NAMESPACE = uuid.UUID("8f1d2a4e-5b6c-4d7e-9f80-1a2b3c4d5e6f")


def stable_id(*parts: object) -> str:
    """A deterministic event id: the same fact always gets the same id, so it is published once."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "|".join(str(p) for p in parts)))


class Rejected(Exception):
    """A permanent refusal: the message goes to the dead-letter topic with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class InfrastructureError(Exception):
    """The database or broker is unreachable: retry the whole batch later."""


INFRA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True)
class Record:
    """A consumed Kafka record, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None

    @classmethod
    def from_consumer_record(cls, r: Any) -> Record:
        return cls(
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            key=r.key,
            value=r.value,
            headers=tuple((k, v) for k, v in (r.headers or ()) if v is not None),
            timestamp=r.timestamp,
        )


@dataclass
class UnitOfWork(Generic[P]):
    """What a handler gets: the open transaction's connection, the clock, and a way to publish."""

    conn: asyncpg.Connection  # type: ignore[type-arg]
    service: str
    clock: Clock
    cause: Event[Any] | None = None
    topics: Topics = field(default_factory=Topics)
    published: list[Event[Any]] = field(default_factory=list)

    async def publish(
        self,
        data: Payload,
        *,
        id: str | None = None,
        topic: str | None = None,
        time: dt.datetime | None = None,
    ) -> bool:
        """Queue an event in the outbox; False if an event with this id was already queued."""
        source = service_source(self.service)
        if self.cause is not None:
            event: Event[Any] = caused_by(self.cause, data, source=source, id=id, time=time or self.clock.now())
        else:
            event = new_event(data, source=source, id=id, time=time or self.clock.now())
        added = await outbox.add(self.conn, topic or self.topics.internal(self.service), event)
        if added:
            self.published.append(event)
        return added


Handler = Callable[[Event[Any], UnitOfWork[Any]], Awaitable[None]]


def authorise(topic: str, event: Event[Any]) -> None:
    """Who may write what where: partners only their own topic, services only theirs."""
    partner = partner_of(topic)
    if partner is not None:
        org = source_organisation(event.source)
        if org is None:
            raise Rejected(
                "wrong-organisation", f"on {topic} the source must be urn:nhs:ods:{partner}, got {event.source!r}"
            )
        if org != partner:
            raise Rejected("wrong-organisation", f"organisation {org} may not write on {topic}")
        if event.data.direction != "inbound":
            raise Rejected("not-allowed", f"{event.type} is published by Homeward services, not by partners")
        return
    if topic.startswith("homeward.") and topic.endswith(".v1"):
        owner = topic.split(".")[1]
        if source_service(event.source) != owner:
            raise Rejected("wrong-source", f"only the {owner} service writes on {topic}, not {event.source!r}")


DLQ_HEADER_PREFIX = "homeward-dlq-"  # reason, error, service, topic, partition, offset, at


def dlq_headers(
    reason: str, error: str, *, service: str, topic: str, at: dt.datetime, **extra: str
) -> list[tuple[str, bytes]]:
    """The headers a dead letter carries: why (the error redacted of NHS numbers and cut to
    2,000 characters), which service refused it, where it came from (``extra`` adds more, such
    as partition and offset) and when."""
    h = DLQ_HEADER_PREFIX
    return [
        (h + "reason", reason.encode()),
        (h + "error", redact_text(error)[:2000].encode()),
        (h + "service", service.encode()),
        (h + "topic", topic.encode()),
        *((h + name.replace("_", "-"), value.encode()) for name, value in extra.items()),
        (h + "at", at.isoformat().encode()),
    ]


def refusal(exc: Exception) -> tuple[str, str]:
    """(reason, message) for a permanent refusal: a rejection, a reused event id, a contract error."""
    if isinstance(exc, Rejected):
        return exc.reason, exc.message
    if isinstance(exc, ContractError):
        return exc.kind, str(exc)
    return "conflicting-duplicate", str(exc)


@dataclass
class BatchResult:
    handled: int = 0
    duplicates: int = 0
    ignored: int = 0
    dead_lettered: list[tuple[Record, str]] = field(default_factory=list)


class EventConsumer:
    def __init__(
        self,
        service: str,
        pool: asyncpg.Pool,  # type: ignore[type-arg]
        handlers: Mapping[type[Payload], Handler],
        *,
        clock: Clock | None = None,
        consumer_name: str | None = None,
        retry_attempts: int = 3,
        retry_backoff_s: float = 0.2,
        authorise: Callable[[str, Event[Any]], None] = authorise,
        topics: Topics | None = None,
    ) -> None:
        self.service = service
        self.pool = pool
        self.handlers = {cls.event_type(): h for cls, h in handlers.items()}
        self.clock = clock or SystemClock()
        self.consumer_name = consumer_name or service
        self.retry_attempts = max(1, retry_attempts)
        self.retry_backoff_s = retry_backoff_s
        self._authorise = authorise
        self.topics = topics or Topics()
        self.dlq_topic = self.topics.dlq(service)

    async def handle_batch(self, records: Sequence[Record]) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                for record in records:
                    await self._handle_one(conn, record, result)
        except INFRA_ERRORS as exc:
            raise InfrastructureError(str(exc)) from exc
        finally:
            BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        for record, reason in result.dead_lettered:
            DEAD_LETTERS.labels(self.service, reason).inc()
            log.warning(
                "message dead-lettered",
                reason=reason,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        return result

    async def _handle_one(self, conn: asyncpg.Connection, record: Record, result: BatchResult) -> None:  # type: ignore[type-arg]
        try:
            event = parse_kafka(record.value, record.headers)
            self._authorise(self.topics.strip(record.topic), event)
        except (ContractError, Rejected) as exc:
            await self._dead_letter(conn, record, *refusal(exc), result)
            EVENTS_HANDLED.labels(
                self.service, "unparsed" if isinstance(exc, ContractError) else "unknown", "rejected"
            ).inc()
            return

        handler = self.handlers.get(event.type)
        if handler is None:
            result.ignored += 1
            return
        structlog.contextvars.bind_contextvars(
            event_id=event.id, event_type=event.type, correlation_id=event.correlationid or event.id
        )
        try:
            await self._run_handler(conn, record, event, handler, result)
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "event_type", "correlation_id")

    async def _run_handler(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        record: Record,
        event: Event[Any],
        handler: Handler,
        result: BatchResult,
    ) -> None:
        last_error: BaseException | None = None
        for attempt in range(1, self.retry_attempts + 1):
            try:
                async with conn.transaction():  # a savepoint inside the batch transaction
                    if not await inbox.claim(conn, self.consumer_name, event):
                        result.duplicates += 1
                        EVENTS_HANDLED.labels(self.service, event.type, "duplicate").inc()
                        return
                    await handler(event, UnitOfWork(conn, self.service, self.clock, cause=event, topics=self.topics))
                result.handled += 1
                EVENTS_HANDLED.labels(self.service, event.type, "handled").inc()
                return
            except (Rejected, inbox.ConflictingDuplicate, ContractError) as exc:
                await self._dead_letter(conn, record, *refusal(exc), result)
                EVENTS_HANDLED.labels(self.service, event.type, "rejected").inc()
                return
            except INFRA_ERRORS:
                raise
            except Exception as exc:
                last_error = exc
                log.warning("handler failed", attempt=attempt, error=f"{type(exc).__name__}: {exc}")
                if attempt < self.retry_attempts:
                    await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
        await self._dead_letter(
            conn,
            record,
            "handler-failed",
            f"failed {self.retry_attempts} times; last error {type(last_error).__name__}: {last_error}",
            result,
        )
        EVENTS_HANDLED.labels(self.service, event.type, "failed").inc()

    async def _dead_letter(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        record: Record,
        reason: str,
        error: str,
        result: BatchResult,
    ) -> None:
        headers = list(record.headers) + dlq_headers(
            reason,
            error,
            service=self.service,
            topic=record.topic,
            at=self.clock.now(),
            partition=str(record.partition),
            offset=str(record.offset),
        )
        await outbox.add_raw(
            conn,
            self.dlq_topic,
            record.key,
            record.value or b"",
            headers,
            event_id=f"dlq:{record.topic}:{record.partition}:{record.offset}",
            event_type="dead-letter",
        )
        result.dead_lettered.append((record, reason))
