"""Consuming events: validate, authorise, de-duplicate, handle, and dead-letter.

A batch of Kafka records is handled in one database transaction; offsets are committed only
after it commits (at-least-once). What happens to each record:

* a record that breaks the contract (malformed JSON, nesting too deep to parse, schema
  violation, invalid NHS number, unknown type), that a partner may not send (wrong
  organisation), or whose parsing or authorising fails in any other way is *rejected*: it
  goes to the dead-letter topic at once, with the reason, and never holds up the batch;
* a handler that raises ``Rejected`` does the same;
* a handler that fails otherwise is retried a bounded number of times, then dead-lettered;
* a duplicate event id (the inbox) is acknowledged and changes nothing; the same id from the
  same source with other content is dead-lettered as ``conflicting-duplicate``;
* a known event type that this service does not handle is acknowledged and skipped.

How a batch runs
----------------

1. Every record is parsed and authorised before the transaction opens.
2. The inbox claims all the batch's events at once: one ``INSERT ... SELECT FROM unnest ...
   ON CONFLICT DO NOTHING RETURNING``, then, only if some ids were there already, one
   ``SELECT`` of their digests. Within a batch the first copy of an id wins, as across
   batches: a later copy with the same content is skipped, with other content dead-lettered.
3. The handlers run one after another *without* a savepoint each: if they all return, the
   batch commits having cost one round trip per handler statement and four or five per
   batch (BEGIN, the claim, perhaps the digests, a check, COMMIT), where it used to cost
   three more per event (SAVEPOINT, the inbox INSERT, RELEASE; and a SELECT for a duplicate).
4. If a handler raises, the whole transaction is rolled back and the batch runs again in
   careful mode: the events before the one that raised run as before, and from it on each
   event runs in its own savepoint (as every event used to), so a bad event is set aside
   without undoing the others. Should an event before that point fail this time, the batch
   is rolled back again with savepoints from that event on.
5. A claim taken for an event that ends up dead-lettered is given back before commit, so an
   operator's replay of the dead letter (``homeward dlq replay``) is handled again. When the
   first copy of an id is dead-lettered, a later copy in the batch is handled in its place.

How errors are classified
-------------------------

The exception and the whole chain of its causes are looked at, so a handler's own exception
that wraps a database error (placements' ``LockContention`` wraps a deadlock) counts as that.

* **Platform down**: the database connection is lost or cannot be had (class 08 and
  ``asyncpg.PostgresConnectionError``, ``CannotConnectNowError`` and the other class 57
  errors that end the session, 57P01 to 57P05; an ``InterfaceError`` about a closed
  connection or pool; a closed connection after a handler raised; ``OSError`` or
  ``TimeoutError`` from the kit's own statements), or Kafka is unreachable (aiokafka's
  connection and timeout errors): :class:`InfrastructureError` is raised and the caller
  rewinds the batch. Nothing is dead-lettered: an outage delays work and loses none.
* **Transient database errors**: SQLSTATE class 40 (serialisation failure 40001, deadlock
  40P01...), class 53 (insufficient resources), class 57 (operator intervention, such as a
  cancelled statement, except those that end the session) and class 58 (system error), from
  a handler or from the kit's own statements: the batch is rolled back and run again after a
  pause that doubles each time (from ``retry_backoff_s`` up to ``transient_backoff_max_s``),
  slept with no transaction open, for as long as ``transient_retry_budget_s`` lasts; then
  InfrastructureError (rewind). Never dead-lettered.
* **OSError or TimeoutError raised by handler code** while the database connection is
  healthy (its savepoint rolls back fine) is a defect of the handler or of something it
  calls, not a platform outage: the event is tried ``retry_attempts`` times, then
  dead-lettered as ``handler-failed``, the reason message saying so.
* **Any other exception in a handler**: tried ``retry_attempts`` times, each try at once in
  a fresh savepoint (nothing sleeps while a transaction is open), then dead-lettered as
  ``handler-failed``. A handler that catches a database error and carries on leaves the
  transaction aborted, which would make the commit a silent rollback: the kit checks for
  that (the savepoint cannot be released; before commit, one statement) and counts it as
  that handler failing.
* **Any exception while parsing or authorising a record** (``RecursionError`` from nesting
  too deep, ``ValueError``, ``UnicodeError``, ``OverflowError``...; only ``MemoryError`` is
  let through) dead-letters that record, as ``malformed-json`` for nesting too deep and
  ``invalid-payload`` otherwise, and never escapes to rewind the batch. An event id or
  source the inbox cannot store (a NUL character, a lone surrogate, over 1,000 bytes) is
  rejected as ``invalid-envelope``.

Progress
--------

The runtime gives :meth:`EventConsumer.handle_batch` a :class:`~homeward.kit.progress.ProgressTracker`
per subscription. A batch that commits is progress (records dead-lettered included); each
transient retry, and a batch that raises (the platform down, the transient budget spent), says
that its partitions wait without progress since the batch began. Records that wait so for
``stall_after_s`` make the subscription *stalled*: ``/readyz`` answers 503 naming it, and
``homeward_stalled`` is 1 (:mod:`homeward.kit.progress`).

Dead letters
------------

Dead letters are written to the outbox in the same transaction, so the decision to set a
message aside commits together with the rest of the batch, and the relay publishes it to
``homeward.dlq.<service>`` with the original key, value and headers plus the
``homeward-dlq-*`` headers of :func:`dlq_headers`. Writing one cannot fail on the record's
own content (:func:`storable_dead_letter`): a header whose name or value the outbox's jsonb
cannot hold (a NUL, a lone surrogate) keeps its place with its name backslash-escaped and its
value in base64, and ``homeward-dlq-base64-headers`` lists the positions of those headers; a
value larger than ``dead_letter_max_bytes`` is replaced by a small JSON stub naming its sha256
digest, its size and where it came from (topic, partition, offset), and a key or a set of
headers that large by its digest or nothing; ``homeward-dlq-truncated`` then says what was
replaced, with ``-original-size`` and ``-original-sha256`` for the value.

Homeward's headers are believed only when Homeward wrote them. A record loses every
``homeward-dlq-*`` header it arrives with, and a partner's record every ``homeward-*`` header,
before anything reads it (:func:`without_untrusted_headers`): what a partner puts on its record
can neither pose as dead-letter metadata nor travel with the record into a dead letter or a
replay. The dead-letter headers end with ``homeward-dlq-mac``, an HMAC (key
``HOMEWARD_DLQ_HMAC_KEY``, :func:`homeward.kit.crypto.dead_letter_mac`) over all of them and
the digests of the key, value and headers kept; ``homeward dlq`` shows a dead letter whose MAC
does not verify as unverified and never replays it.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import asyncpg
import structlog
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
from homeward.contracts import (
    ContractError,
    Event,
    Payload,
    parse_kafka,
    partner_of,
)
from homeward.contracts.envelope import TYPE_HEADER
from homeward.contracts.errors import FieldProblem
from homeward.contracts.events import EVENT_TYPES

from . import inbox, outbox
from .authority import INGRESS_TOPIC as INGRESS_TOPIC
from .authority import Rejected, authorise
from .authority import refusal as refusal
from .clock import Clock, SystemClock
from .deadletter import DLQ_HEADER_PREFIX as DLQ_HEADER_PREFIX
from .deadletter import DLQ_MAC_HEADER as DLQ_MAC_HEADER
from .deadletter import dlq_headers as dlq_headers
from .deadletter import signed_dlq_headers as signed_dlq_headers
from .deadletter import storable_text as storable_text
from .identity import EVENT_ID_NAMESPACE as EVENT_ID_NAMESPACE
from .identity import stable_id as stable_id
from .logging import get_logger, redact_text
from .metrics import BATCH_RETRIES, BATCH_SECONDS, DEAD_LETTERS, EVENTS_HANDLED
from .progress import ProgressTracker, partitions_of
from .topics import Topics
from .uow import UnitOfWork, UnitOfWorkFactory

log = get_logger(__name__)

P = TypeVar("P", bound=Payload)


class InfrastructureError(Exception):
    """The database or broker is unreachable: retry the whole batch later."""


# The coarse set jobs use to tell an outage from a failure of their own (the consumer
# classifies more finely: see the module docstring and ``database_error_kind``).
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)

_PLATFORM_DOWN: tuple[type[BaseException], ...] = (
    InfrastructureError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
)
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05"})
_TRANSIENT_CLASSES = frozenset({"40", "53", "57", "58"})
_IN_FAILED_TRANSACTION = "25P02"

ErrorKind = Literal["platform", "transient", "aborted"]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it and what it was raised while handling, breadth first."""
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    while queue and len(seen) < 50:
        e = queue.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        queue += [c for c in (e.__cause__, e.__context__) if c is not None]


def _says_closed(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "closed" in text or "closing" in text


def database_error_kind(exc: BaseException) -> ErrorKind | None:
    """What an exception (or one of its causes) says about the platform.

    ``"platform"``: the connection is gone or the broker unreachable (rewind the batch);
    ``"transient"``: class 40, 53, 57 (but for those that end the session) or 58 (roll back,
    wait, run the batch again); ``"aborted"``: a statement found the transaction aborted by
    an earlier error that someone caught; None: none of these."""
    aborted = False
    for e in _causes(exc):
        if isinstance(e, _PLATFORM_DOWN):
            return "platform"
        if isinstance(e, asyncpg.InterfaceError) and _says_closed(e):
            return "platform"
        if isinstance(e, asyncpg.PostgresError):
            state = str(getattr(e, "sqlstate", None) or "")
            if state.startswith("08") or state in _SESSION_ENDED:
                return "platform"
            if state[:2] in _TRANSIENT_CLASSES:
                return "transient"
            if state == _IN_FAILED_TRANSACTION:
                aborted = True
    return "aborted" if aborted else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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


Handler = Callable[[Event[Any], UnitOfWork[Any]], Awaitable[None]]


HOMEWARD_HEADER_PREFIX = "homeward-"


def without_untrusted_headers(record: Record, *, from_partner: bool) -> Record:
    """``record`` without the headers only Homeward may write: every ``homeward-*`` header of a
    partner's record (the prefix in any case), and ``homeward-dlq-*`` on any record (dead-letter
    metadata is only ever true on a dead-letter topic, where the consumer never reads)."""
    prefix = HOMEWARD_HEADER_PREFIX if from_partner else DLQ_HEADER_PREFIX
    kept = tuple((k, v) for k, v in record.headers if not k.lower().startswith(prefix))
    if len(kept) == len(record.headers):
        return record
    return dataclasses.replace(record, headers=kept)


@dataclass(frozen=True)
class StorableDeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    extra: dict[str, str]  # for dlq_headers: base64_headers, truncated, original_size, original_sha256


def storable_headers(headers: Sequence[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[int]]:
    """The headers as the outbox stores them (each value as latin-1 text in a jsonb array), and
    the positions of those that had to be encoded: a name holding a NUL or a lone surrogate is
    backslash-escaped (:func:`storable_text`) and the value of such a header, or any value
    holding a 0x00 byte, is stored as its base64. The outbox's ``decode_headers`` gives them
    back unchanged; the positions tell a reader which values to base64-decode."""
    out: list[tuple[str, bytes]] = []
    encoded: list[int] = []
    for i, (name, value) in enumerate(headers):
        safe = storable_text(name)
        if safe == name and b"\x00" not in value:
            out.append((name, value))
        else:
            out.append((safe, base64.b64encode(value)))
            encoded.append(i)
    return out, encoded


def storable_dead_letter(record: Record, max_bytes: int) -> StorableDeadLetter:
    """What is stored for ``record``'s dead letter: it cannot fail on the record's content, and
    no part of it (value, key, headers) is larger than about ``max_bytes``."""
    headers, encoded = storable_headers(record.headers)
    extra: dict[str, str] = {}
    truncated: list[str] = []
    if sum(len(k.encode()) + len(v) for k, v in headers) > max_bytes:
        truncated.append(f"headers ({len(headers)} dropped)")
        headers, encoded = [], []
    if encoded:
        extra["base64_headers"] = ",".join(str(i) for i in encoded)
    key = record.key
    if key is not None and len(key) > max_bytes:
        truncated.append(f"key (replaced by sha256:<its digest>, it was {len(key)} bytes)")
        key = b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    value = record.value or b""
    if len(value) > max_bytes:
        digest = hashlib.sha256(value).hexdigest()
        truncated.append("value")
        extra["original_size"] = str(len(value))
        extra["original_sha256"] = digest
        value = json.dumps(
            {
                "homeward_dead_letter": "value-truncated",
                "detail": f"the value was larger than {max_bytes} bytes; the original is at the topic, "
                "partition and offset below for as long as the topic keeps it",
                "sha256": digest,
                "size": len(record.value or b""),
                "topic": storable_text(record.topic),
                "partition": record.partition,
                "offset": record.offset,
            }
        ).encode()
    if truncated:
        extra["truncated"] = ", ".join(truncated)
    return StorableDeadLetter(key, value, headers, extra)


_MAX_KEY_BYTES = 1000  # the inbox's primary key index holds (consumer, source, event id) under 2,704 bytes


def _check_storable(event: Event[Any]) -> None:
    """Refuse an id or source the inbox cannot store (so the batch's one claim cannot fail)."""
    problems = []
    for name, value in (("id", event.id), ("source", event.source)):
        if "\x00" in value:
            problems.append(FieldProblem(name, "must not contain a NUL character"))
        elif len(value.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
            problems.append(FieldProblem(name, f"must be at most {_MAX_KEY_BYTES} bytes"))
        elif storable_text(value) != value:
            problems.append(FieldProblem(name, "must be valid Unicode text (it holds a lone surrogate)"))
    if problems:
        raise ContractError("invalid-envelope", "CloudEvents attributes are invalid", problems)


@dataclass
class BatchResult:
    handled: int = 0
    duplicates: int = 0
    ignored: int = 0
    dead_lettered: list[tuple[Record, str]] = field(default_factory=list)


@dataclass
class _Item:
    """One record of a batch, parsed once (before the transaction) for every run of the batch."""

    index: int
    record: Record
    event: Event[Any] | None = None
    handler: Handler | None = None
    claim: inbox.Claim | None = None
    refused: tuple[str, str] | None = None
    refused_label: str = "unparsed"


@dataclass
class _Run:
    """What one run of a batch decided; it counts only if that run commits."""

    result: BatchResult = field(default_factory=BatchResult)
    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    inserted: dict[inbox.Key, inbox.Claim] = field(default_factory=dict)  # claimed by this batch
    before: dict[inbox.Key, str | None] = field(default_factory=dict)  # claimed before: their digest
    unclaimable: dict[inbox.Key, str] = field(default_factory=dict)  # the inbox refused them: why
    owner: dict[inbox.Key, inbox.Claim | None] = field(default_factory=dict)  # the copy handled, if any
    unguarded: bool = False  # a handler ran without its own savepoint


class _Restart(Exception):
    """Roll the batch back and run it again with a savepoint per event from ``careful_from`` on."""

    def __init__(self, careful_from: int, cause: BaseException) -> None:
        super().__init__(_describe(cause))
        self.careful_from = careful_from
        self.cause = cause


class _Transient(Exception):
    """Roll the batch back, wait, and run it again (a deadlock, a serialisation failure...)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(_describe(cause))
        self.cause = cause


_SAVEPOINT = "homeward_event"


def _raise_unless_the_handlers(exc: Exception, conn: asyncpg.Connection) -> ErrorKind | None:  # type: ignore[type-arg]
    """A handler raised ``exc``: re-raise it as the platform's (the database or Kafka gone) or as a
    transient database error, which the batch answers as a whole; else return its kind, for the
    caller to treat as the handler's own failure."""
    kind = database_error_kind(exc)
    if kind == "platform" or conn.is_closed():
        raise InfrastructureError(_describe(exc)) from exc
    if kind == "transient":
        raise _Transient(exc) from exc
    return kind


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
        transient_retry_budget_s: float = 30.0,
        transient_backoff_max_s: float = 5.0,
        dead_letter_max_bytes: int = 512 * 1024,
        dead_letter_key: bytes | None = None,
        one_batch_at_a_time: bool = False,
        unit_of_work: UnitOfWorkFactory = UnitOfWork,
        parking_expiry: dt.timedelta | None = None,
    ) -> None:
        """``one_batch_at_a_time``: the batches of this consumer's subscriptions (which run
        side by side, one task each) take turns, one transaction at a time in this process."""
        self.service = service
        self.pool = pool
        self.handlers = {cls.event_type(): h for cls, h in handlers.items()}
        self.clock = clock or SystemClock()
        self.consumer_name = consumer_name or service
        self.retry_attempts = max(1, retry_attempts)
        # The first pause after a transient database error; it doubles up to transient_backoff_max_s.
        self.retry_backoff_s = max(0.0, retry_backoff_s)
        self.transient_retry_budget_s = max(0.0, transient_retry_budget_s)
        self.transient_backoff_max_s = max(0.0, transient_backoff_max_s)
        self.dead_letter_max_bytes = dead_letter_max_bytes
        # Signs the dead letters' metadata (homeward.kit.crypto); the runtime always gives one.
        self.dead_letter_key = dead_letter_key
        self._authorise = authorise
        # Builds each event's unit of work: the service's subclass, naming its repositories.
        self.unit_of_work = unit_of_work
        self.parking_expiry = parking_expiry
        self.topics = topics or Topics()
        self.dlq_topic = self.topics.dlq(service)
        self._turns: asyncio.Lock | contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if one_batch_at_a_time else contextlib.nullcontext()
        )

    # ------------------------------------------------------------------ the batch

    async def handle_batch(self, records: Sequence[Record], *, progress: ProgressTracker | None = None) -> BatchResult:
        """Handle one batch in one transaction (module docstring). ``progress`` hears whether
        it committed: every transient retry and a batch that fails tell it that ``records`` wait
        without progress since the batch began, a batch that commits that it progressed."""
        started = time.perf_counter()
        began = progress.now() if progress is not None else 0.0
        waiting = partitions_of(records)
        try:
            run = await self._handle_batch(
                [self._prepare(i, self._intake(r)) for i, r in enumerate(records)],
                progress=None if progress is None else (progress, began, waiting),
            )
        except Exception as exc:
            if progress is not None:
                progress.failed(_describe(exc), waiting=waiting, since=began)
            raise
        finally:
            BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        if progress is not None:
            progress.progressed()
        for (event_type, outcome), n in run.outcomes.items():
            EVENTS_HANDLED.labels(self.service, event_type, outcome).inc(n)
        for record, reason in run.result.dead_lettered:
            DEAD_LETTERS.labels(self.service, reason).inc()
            log.warning(
                "message dead-lettered",
                reason=reason,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
            )
        return run.result

    async def _handle_batch(
        self, items: list[_Item], *, progress: tuple[ProgressTracker, float, set[str]] | None = None
    ) -> _Run:
        careful_from = len(items)  # no savepoints until a handler raises
        transient_since: float | None = None
        transient_tries = 0
        while True:
            try:
                try:
                    return await self._run(items, careful_from)
                except (_Restart, _Transient, InfrastructureError):
                    raise
                except Exception as exc:
                    meaning = _outside(exc)
                    if meaning is exc:
                        raise
                    raise meaning from exc
            except _Restart as restart:
                if restart.careful_from >= careful_from:  # cannot happen: it would never end
                    raise restart.cause from restart
                careful_from = restart.careful_from
                BATCH_RETRIES.labels(self.service, "careful").inc()
                log.info(
                    "a handler raised; the batch runs again with a savepoint per event",
                    from_record=careful_from,
                    size=len(items),
                    error=redact_text(_describe(restart.cause))[:500],
                )
            except _Transient as transient:
                now = time.monotonic()
                if transient_since is None:
                    transient_since = now
                pause = min(self.transient_backoff_max_s, max(self.retry_backoff_s, 0.001) * 2**transient_tries)
                transient_tries += 1
                if now + pause - transient_since > self.transient_retry_budget_s:
                    BATCH_RETRIES.labels(self.service, "rewound").inc()
                    raise InfrastructureError(
                        f"transient database errors for {now - transient_since:.1f}s ({transient_tries} tries, "
                        f"budget {self.transient_retry_budget_s}s); last: {_describe(transient.cause)}"
                    ) from transient.cause
                BATCH_RETRIES.labels(self.service, "transient").inc()
                if progress is not None:  # a stall shows while the retries go on, not only once they give up
                    tracker, began, waiting = progress
                    tracker.failed(_describe(transient.cause), waiting=waiting, since=began)
                log.warning(
                    "transient database error; the batch was rolled back and runs again",
                    error=redact_text(_describe(transient.cause))[:500],
                    attempt=transient_tries,
                    pause_s=round(pause, 3),
                )
                await asyncio.sleep(pause)  # with no transaction open: _run's connection is back in the pool

    async def _run(self, items: Sequence[_Item], careful_from: int) -> _Run:
        run = _Run()
        async with self._turns, self.pool.acquire() as conn, conn.transaction():
            await self._claim(conn, items, run, careful=careful_from == 0)
            for item in items:
                await self._one(conn, item, run, careful=item.index >= careful_from)
            await self._settle_claims(conn, run)
            if run.unguarded:
                # A handler that caught a database error and carried on left the transaction
                # aborted, and COMMIT would quietly roll it back: this statement fails instead.
                await conn.execute("SELECT 1")
        return run

    # ------------------------------------------------------------------ parsing (no transaction)

    def _intake(self, record: Record) -> Record:
        from_partner = partner_of(self.topics.strip(record.topic)) is not None
        return without_untrusted_headers(record, from_partner=from_partner)

    def _passed_over(self, record: Record) -> bool:
        """A record of a Homeward service's topic whose ``homeward-type`` header names a type of
        the contracts this consumer has no handler for: ignored without parsing it (parsing and
        validating is most of a record's cost, and most records of the ingress's topic are for
        another service). Partners' records are always parsed: their headers are not believed."""
        if partner_of(self.topics.strip(record.topic)) is not None:
            return False
        named = next((v for k, v in record.headers if k == TYPE_HEADER), None)
        if named is None:
            return False
        type_ = named.decode("utf-8", errors="replace")
        return type_ in EVENT_TYPES and type_ not in self.handlers

    def _prepare(self, index: int, record: Record) -> _Item:
        item = _Item(index, record)
        if self._passed_over(record):
            return item
        try:
            event = parse_kafka(record.value, record.headers)
            self._authorise(self.topics.strip(record.topic), event)
            handler = self.handlers.get(event.type)
            if handler is not None:
                _check_storable(event)
                item.claim = inbox.Claim(event.source, event.id, event.type, inbox.digest(event))
            item.event, item.handler = event, handler
        except (ContractError, Rejected) as exc:
            item.refused = refusal(exc)
            item.refused_label = "unparsed" if isinstance(exc, ContractError) else "unknown"
        except MemoryError:
            raise
        except RecursionError as exc:
            item.refused = ("malformed-json", f"the message is nested too deeply to parse ({_describe(exc)})")
        except Exception as exc:
            item.refused = ("invalid-payload", f"the message could not be parsed ({_describe(exc)})")
        return item

    # ------------------------------------------------------------------ the inbox

    async def _claim(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        items: Sequence[_Item],
        run: _Run,
        *,
        careful: bool,
    ) -> None:
        first: dict[inbox.Key, inbox.Claim] = {}
        for item in items:
            if item.claim is not None:
                first.setdefault(item.claim.key, item.claim)
        if not first:
            return
        claims = list(first.values())
        if not careful:
            try:
                claimed = await inbox.claim_many(conn, self.consumer_name, claims)
            except asyncpg.PostgresError as exc:
                if database_error_kind(exc) is not None:
                    raise
                raise _Restart(0, exc) from exc  # the careful run finds the event the inbox refuses
        else:
            try:
                async with conn.transaction():
                    claimed = await inbox.claim_many(conn, self.consumer_name, claims)
            except asyncpg.PostgresError as exc:
                if database_error_kind(exc) is not None:
                    raise
                claimed = await self._claim_one_by_one(conn, claims, run)
        run.inserted = {k: first[k] for k in claimed.inserted}
        run.before = claimed.before
        run.owner = dict.fromkeys(run.inserted)

    async def _claim_one_by_one(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        claims: Sequence[inbox.Claim],
        run: _Run,
    ) -> inbox.Claimed:
        out = inbox.Claimed()
        for claim in claims:
            try:
                async with conn.transaction():
                    one = await inbox.claim_many(conn, self.consumer_name, [claim])
            except asyncpg.PostgresError as exc:
                if database_error_kind(exc) is not None:
                    raise
                run.unclaimable[claim.key] = f"the inbox cannot record this event id ({_describe(exc)})"
                continue
            out.inserted |= one.inserted
            out.before.update(one.before)
        return out

    async def _settle_claims(self, conn: asyncpg.Connection, run: _Run) -> None:  # type: ignore[type-arg]
        """Give back the claims of events dead-lettered instead of handled, and make a claim
        taken over by a later copy stand for that copy."""
        await inbox.release(conn, self.consumer_name, [k for k, owner in run.owner.items() if owner is None])
        for key, owner in run.owner.items():
            if owner is not None and owner != run.inserted[key]:
                await inbox.reassign(conn, self.consumer_name, owner)

    # ------------------------------------------------------------------ one record

    async def _one(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        item: _Item,
        run: _Run,
        *,
        careful: bool,
    ) -> None:
        if item.refused is not None:
            await self._dead_letter(conn, run, item.record, *item.refused)
            run.outcomes[item.refused_label, "rejected"] += 1
            return
        event, handler, claim = item.event, item.handler, item.claim
        if event is None or handler is None or claim is None:
            run.result.ignored += 1
            return
        key = claim.key
        if key in run.unclaimable:
            await self._dead_letter(conn, run, item.record, "invalid-envelope", run.unclaimable[key])
            run.outcomes[event.type, "rejected"] += 1
            return
        held = run.owner.get(key)
        if key in run.before or held is not None:  # handled before, or by an earlier copy in this batch
            known = held.digest if held is not None else run.before[key]
            if known is not None and known != claim.digest:
                await self._dead_letter(
                    conn, run, item.record, "conflicting-duplicate", str(inbox.ConflictingDuplicate(event))
                )
                run.outcomes[event.type, "rejected"] += 1
            else:
                run.result.duplicates += 1
                run.outcomes[event.type, "duplicate"] += 1
            return
        structlog.contextvars.bind_contextvars(
            event_id=event.id, event_type=event.type, correlation_id=event.correlationid or event.id
        )
        try:
            if careful:
                handled = await self._handle_carefully(conn, item, event, handler, run)
            else:
                await self._handle_fast(conn, item, event, handler, run)
                handled = True
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "event_type", "correlation_id")
        if handled:
            run.owner[key] = claim
            run.result.handled += 1
            run.outcomes[event.type, "handled"] += 1

    async def _in_unit_of_work(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        item: _Item,
        event: Event[Any],
        handler: Handler,
    ) -> None:
        """The handler, in the service's unit of work; then what its aggregates recorded is
        published (homeward.kit.uow)."""
        uow = self.unit_of_work(
            conn,
            self.service,
            self.clock,
            cause=event,
            topics=self.topics,
            origin=item.record.topic,
            handlers=self.handlers,
            dead_letter_key=self.dead_letter_key,
            parking_expiry=self.parking_expiry,
        )
        await handler(event, uow)
        await uow.flush()

    async def _handle_fast(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        item: _Item,
        event: Event[Any],
        handler: Handler,
        run: _Run,
    ) -> None:
        run.unguarded = True
        try:
            await self._in_unit_of_work(conn, item, event, handler)
        except Exception as exc:
            kind = _raise_unless_the_handlers(exc, conn)
            # Aborted: an earlier handler caught a database error and carried on; find which.
            raise _Restart(0 if kind == "aborted" else item.index, exc) from exc

    async def _handle_carefully(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        item: _Item,
        event: Event[Any],
        handler: Handler,
        run: _Run,
    ) -> bool:
        """Run the handler in a savepoint, up to ``retry_attempts`` times; False if dead-lettered."""
        last: BaseException | None = None
        carried_on = False
        for attempt in range(1, self.retry_attempts + 1):
            await conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            returned = False
            try:
                await self._in_unit_of_work(conn, item, event, handler)
                returned = True
                await conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                return True
            except Exception as exc:
                _raise_unless_the_handlers(exc, conn)
                # Whatever the handler did is undone; this statement working shows the
                # connection is healthy (if it fails, the error is classified outside).
                await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}")
                if isinstance(exc, Rejected | ContractError | inbox.ConflictingDuplicate):
                    await self._dead_letter(conn, run, item.record, *refusal(exc))
                    run.outcomes[event.type, "rejected"] += 1
                    return False
                last, carried_on = exc, returned
                log.warning(
                    "handler failed",
                    attempt=attempt,
                    error=_describe(exc),
                    carried_on_after_database_error=returned or None,
                )
        assert last is not None
        message = f"failed {self.retry_attempts} times; last error {_describe(last)}"
        if carried_on:
            message += (
                " (the handler returned, but it had caught a database error and carried on in the aborted "
                "transaction: a defect in the handler)"
            )
        elif isinstance(last, OSError | TimeoutError):
            message += (
                " (raised by the handler while the database connection was healthy: a defect in the handler "
                "or in a service it calls, not a platform outage)"
            )
        await self._dead_letter(conn, run, item.record, "handler-failed", message)
        run.outcomes[event.type, "failed"] += 1
        return False

    # ------------------------------------------------------------------ dead letters

    async def _dead_letter(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        run: _Run,
        record: Record,
        reason: str,
        error: str,
    ) -> None:
        stored = storable_dead_letter(record, self.dead_letter_max_bytes)
        metadata = dlq_headers(
            reason,
            error,
            service=self.service,
            topic=record.topic,
            at=self.clock.now(),
            partition=str(record.partition),
            offset=str(record.offset),
            **stored.extra,
        )
        headers = stored.headers + signed_dlq_headers(
            self.dead_letter_key, metadata, record_key=stored.key, value=stored.value, headers=stored.headers
        )
        await outbox.add_raw(
            conn,
            self.dlq_topic,
            stored.key,
            stored.value,
            headers,
            event_id=storable_text(f"dlq:{record.topic}:{record.partition}:{record.offset}"),
            event_type="dead-letter",
        )
        run.result.dead_lettered.append((record, reason))


def _outside(exc: Exception) -> Exception:
    """What an exception from the kit's own statements (not a handler's) means for the batch."""
    kind = database_error_kind(exc)
    if kind == "transient":
        return _Transient(exc)
    if kind == "platform" or isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return InfrastructureError(_describe(exc))
    if kind == "aborted":
        return _Restart(0, exc)  # a handler that ran without a savepoint left the transaction aborted
    return exc
