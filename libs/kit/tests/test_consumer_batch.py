"""The batch consumer against the real PostgreSQL, records given straight to ``handle_batch``:
the bulk inbox, savepoints only after a handler raises, how errors are classified, and dead
letters that cannot fail on the record's own content."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from homeward.contracts import Event, new_event, partner_source
from homeward.contracts.events import PlacementMade
from homeward.kit import inbox, outbox
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import (
    DLQ_HEADER_PREFIX,
    EventConsumer,
    InfrastructureError,
    Record,
    Rejected,
    UnitOfWork,
)
from homeward.kit.db import create_pool, migrate
from homeward.kit.topics import Topics
from homeward.testing import sample_placement

ODS = "RYG"
TOPIC = Topics().partner(ODS)
DLQ = Topics().dlq("placements")
H = DLQ_HEADER_PREFIX

Behaviour = Callable[[Event[Any], UnitOfWork[Any]], Awaitable[None]]


def placement(pid: str, rate: int = 54500) -> PlacementMade:
    return sample_placement(pid, commissioner=ODS, daily_rate_pence=rate)


def event(pid: str, rate: int = 54500, id: str | None = None) -> Event[PlacementMade]:
    return new_event(placement(pid, rate), source=partner_source(ODS), id=id)


class Batch:
    """Records on one partner topic partition, at increasing offsets."""

    def __init__(self) -> None:
        self.offset = 0

    def raw(
        self, value: bytes | None, *, key: bytes | None = b"k", headers: tuple[tuple[str, bytes], ...] = ()
    ) -> Record:
        self.offset += 1
        return Record(TOPIC, 0, self.offset, key, value, headers)

    def of(self, e: Event[Any], *, headers: tuple[tuple[str, bytes], ...] = ()) -> Record:
        key, value, h = e.to_kafka()
        return self.raw(value, key=key, headers=tuple(h) + headers)

    def __call__(self, *events: Event[Any]) -> list[Record]:
        return [self.of(e) for e in events]


class Handler:
    """Stores each placement in ``seen``; ``behave[placement_id]`` runs first and may raise."""

    def __init__(self) -> None:
        self.behave: dict[str, Behaviour] = {}
        self.calls: Counter[str] = Counter()

    async def __call__(self, e: Event[PlacementMade], uow: UnitOfWork[Any]) -> None:
        pid = e.data.placement_id
        self.calls[pid] += 1
        await uow.conn.execute(
            "INSERT INTO seen (event_id, placement_id, rate) VALUES ($1, $2, $3)", e.id, pid, e.data.daily_rate_pence
        )
        if pid in self.behave:
            await self.behave[pid](e, uow)

    def fail(self, pid: str, exc: BaseException, times: int | None = None) -> None:
        """Raise ``exc`` (after the insert: what it did must be undone) ``times`` times, or always."""

        async def behaviour(e: Event[Any], uow: UnitOfWork[Any]) -> None:
            if times is None or self.calls[pid] <= times:
                raise exc

        self.behave[pid] = behaviour


@pytest.fixture
async def pool(database: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[type-arg]
    (tmp_path / "0001_seen.sql").write_text(
        "CREATE TABLE seen (event_id text NOT NULL, placement_id text PRIMARY KEY, rate int NOT NULL);"
    )
    await migrate(database, "placements", tmp_path)
    p = await create_pool(database, 1, 3)
    yield p
    await p.close()


def consumer(pool: asyncpg.Pool, handler: Handler, **options: Any) -> EventConsumer:  # type: ignore[type-arg]
    options.setdefault("retry_backoff_s", 0.001)
    return EventConsumer(
        "placements",
        pool,
        {PlacementMade: handler},
        clock=FixedClock(__import__("datetime").date(2026, 1, 6)),
        **options,
    )


async def seen(pool: asyncpg.Pool) -> dict[str, int]:  # type: ignore[type-arg]
    return {r["placement_id"]: r["rate"] for r in await pool.fetch("SELECT placement_id, rate FROM seen")}


async def dead_letters(pool: asyncpg.Pool) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:  # type: ignore[type-arg]
    rows = await pool.fetch("SELECT key, value, headers FROM outbox WHERE topic = $1 ORDER BY id", DLQ)
    return [(r["key"], bytes(r["value"]), outbox.decode_headers(r["headers"])) for r in rows]


def reasons(letters: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> list[str]:
    return [dict(h)[H + "reason"].decode() for _, _, h in letters]


async def inbox_digests(pool: asyncpg.Pool) -> dict[str, str]:  # type: ignore[type-arg]
    return {r["event_id"]: r["digest"] for r in await pool.fetch("SELECT event_id, digest FROM inbox")}


def reused(e: Event[Any], rate: int) -> Event[PlacementMade]:
    """The same id from the same source for a different event."""
    return new_event(placement(e.data.placement_id, rate), source=e.source, id=e.id, time=e.time)


# ---------------------------------------------------------------------------------------- inbox


async def test_duplicates_within_a_batch_and_across_batches(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    handler, batch = Handler(), Batch()
    c = consumer(pool, handler)
    a, b = event("PLC-A", id="dup-a"), event("PLC-B", id="dup-b")  # ids a redactor cannot mistake for NHS numbers
    result = await c.handle_batch(batch(a, a, reused(a, 99_900), b))
    assert (result.handled, result.duplicates) == (2, 1)
    assert [reason for _, reason in result.dead_lettered] == ["conflicting-duplicate"]
    assert await seen(pool) == {"PLC-A": 54500, "PLC-B": 54500}  # the first copy won

    again = await c.handle_batch(batch(reused(a, 99_900), a, b))
    assert (again.handled, again.duplicates) == (0, 2)
    assert [reason for _, reason in again.dead_lettered] == ["conflicting-duplicate"]
    letters = await dead_letters(pool)
    assert reasons(letters) == ["conflicting-duplicate", "conflicting-duplicate"]
    assert a.id.encode() in dict(letters[0][2])[H + "error"]
    assert set(await inbox_digests(pool)) == {a.id, b.id}
    assert handler.calls == Counter({"PLC-A": 1, "PLC-B": 1})  # no handler raised: one run, no retries


async def test_the_same_id_from_another_source_is_another_event(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    handler, batch = Handler(), Batch()
    a = event("PLC-A")
    other = new_event(placement("PLC-O"), source=partner_source(ODS, "ward-system"), id=a.id)
    result = await consumer(pool, handler).handle_batch(batch(a, other))
    assert (result.handled, result.duplicates, result.dead_lettered) == (2, 0, [])


async def test_when_the_first_copy_is_dead_lettered_a_later_copy_is_handled_in_its_place(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
) -> None:
    handler, batch = Handler(), Batch()
    c = consumer(pool, handler)
    first = event("PLC-X", rate=1)
    second = reused(first, 2)

    async def refuse_rate_1(e: Event[Any], uow: UnitOfWork[Any]) -> None:
        if e.data.daily_rate_pence == 1:
            raise Rejected("not-party", "rate 1 is refused")

    handler.behave["PLC-X"] = refuse_rate_1
    result = await c.handle_batch(batch(event("PLC-G1"), first, second, second, event("PLC-G2")))
    assert [reason for _, reason in result.dead_lettered] == ["not-party"]
    assert (result.handled, result.duplicates) == (3, 1)
    assert await seen(pool) == {"PLC-G1": 54500, "PLC-X": 2, "PLC-G2": 54500}
    assert (await inbox_digests(pool))[first.id] == inbox.digest(second)  # the claim stands for the copy handled

    later = await c.handle_batch(batch(second, first))
    assert (later.handled, later.duplicates) == (0, 1)
    assert [reason for _, reason in later.dead_lettered] == ["conflicting-duplicate"]


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [(Rejected("not-party", "not yet party to it"), "not-party"), (RuntimeError("a bug"), "handler-failed")],
)
async def test_a_dead_lettered_event_is_handled_again_when_replayed(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    refusal: Exception,
    reason: str,
) -> None:
    handler, batch = Handler(), Batch()
    c = consumer(pool, handler)
    e = event("PLC-LATER")
    handler.fail("PLC-LATER", refusal)
    result = await c.handle_batch(batch(event("PLC-G1"), e, event("PLC-G2")))
    assert [r for _, r in result.dead_lettered] == [reason]
    assert result.handled == 2
    assert e.id not in await inbox_digests(pool)  # the claim was given back

    del handler.behave["PLC-LATER"]  # fixed (reference data arrived, the bug was fixed)
    [(key, value, headers)] = await dead_letters(pool)
    # What `homeward dlq replay` does: the original record, without the dead-letter headers,
    # back on the topic it came from.
    topic = dict(headers)[H + "topic"].decode()
    original = tuple((k, v) for k, v in headers if not k.startswith(H))
    replayed = Record(topic, 0, 100, key, value, original)
    assert (await c.handle_batch([replayed])).handled == 1
    assert "PLC-LATER" in await seen(pool)
    assert (await c.handle_batch([replayed])).duplicates == 1


# ---------------------------------------------------------------------------------------- errors


class LockContention(ConnectionError):
    """Like placements' own: a ConnectionError raised from a deadlock."""


def lock_contention() -> BaseException:
    try:
        raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
    except asyncpg.exceptions.DeadlockDetectedError as exc:
        try:
            raise LockContention("deadlock waiting for a placement lock") from exc
        except LockContention as wrapped:
            return wrapped


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        lambda: asyncpg.exceptions.SerializationError("could not serialize access"),
        lambda: asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        lambda: asyncpg.exceptions.TooManyConnectionsError("too many connections"),
        lock_contention,
    ],
    ids=["deadlock", "serialization", "query-canceled", "too-many-connections", "wrapped-deadlock"],
)
async def test_transient_database_errors_are_retried_and_never_dead_lettered(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    make_error: Callable[[], BaseException],
) -> None:
    handler, batch = Handler(), Batch()
    handler.fail("PLC-T", make_error(), times=3)
    result = await consumer(pool, handler).handle_batch(batch(event("PLC-G1"), event("PLC-T"), event("PLC-G2")))
    assert (result.handled, result.dead_lettered) == (3, [])
    assert handler.calls["PLC-T"] == 4
    assert await seen(pool) == {"PLC-G1": 54500, "PLC-T": 54500, "PLC-G2": 54500}
    assert await dead_letters(pool) == []


async def test_transient_errors_that_outlast_the_budget_rewind_the_batch(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    handler, batch = Handler(), Batch()
    handler.fail("PLC-T", asyncpg.exceptions.SerializationError("could not serialize access"))
    c = consumer(pool, handler, transient_retry_budget_s=0.05, transient_backoff_max_s=0.01)
    with pytest.raises(InfrastructureError, match="SerializationError"):
        await c.handle_batch(batch(event("PLC-G1"), event("PLC-T"), event("PLC-A", id="a"), event("PLC-B", id="a")))
    assert handler.calls["PLC-T"] > 1
    assert await seen(pool) == {}
    assert await dead_letters(pool) == []
    assert await inbox_digests(pool) == {}


@pytest.mark.parametrize(
    "error",
    [
        OSError("connection refused by the rates service"),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("the rates service did not answer"),
    ],
    ids=["oserror", "connection-refused", "timeout"],
)
async def test_an_io_error_from_a_handler_with_a_healthy_connection_is_dead_lettered(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    error: Exception,
) -> None:
    handler, batch = Handler(), Batch()
    handler.fail("PLC-IO", error)
    result = await consumer(pool, handler, retry_attempts=3).handle_batch(
        batch(event("PLC-G1"), event("PLC-IO"), event("PLC-G2"))
    )
    assert [r for _, r in result.dead_lettered] == ["handler-failed"]
    assert handler.calls["PLC-IO"] >= 3
    assert await seen(pool) == {"PLC-G1": 54500, "PLC-G2": 54500}
    [(_, _, headers)] = await dead_letters(pool)
    message = dict(headers)[H + "error"].decode()
    assert message.startswith(f"failed 3 times; last error {type(error).__name__}")
    assert "not a platform outage" in message


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.InterfaceError("cannot perform operation: connection is closed"),
    ],
    ids=["connection-lost", "admin-shutdown", "cannot-connect-now", "connection-closed"],
)
async def test_the_platform_going_down_rewinds_the_batch(pool: asyncpg.Pool, error: Exception) -> None:  # type: ignore[type-arg]
    handler, batch = Handler(), Batch()
    handler.fail("PLC-DOWN", error)
    with pytest.raises(InfrastructureError):
        await consumer(pool, handler).handle_batch(batch(event("PLC-G1"), event("PLC-DOWN")))
    assert handler.calls["PLC-DOWN"] == 1
    assert await seen(pool) == {}
    assert await dead_letters(pool) == []


async def test_a_closed_pool_rewinds_the_batch(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    c = consumer(pool, Handler())
    await pool.close()
    with pytest.raises(InfrastructureError):
        await c.handle_batch(Batch()(event("PLC-G1")))


async def test_a_handler_that_swallows_a_database_error_cannot_lose_the_batch(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
) -> None:
    handler, batch = Handler(), Batch()

    async def swallow(e: Event[Any], uow: UnitOfWork[Any]) -> None:
        try:
            await uow.conn.execute("SELECT 1 / 0")
        except asyncpg.exceptions.DivisionByZeroError:
            pass  # and carries on in an aborted transaction

    handler.behave["PLC-S1"] = handler.behave["PLC-S2"] = handler.behave["PLC-S3"] = swallow
    c = consumer(pool, handler)
    result = await c.handle_batch(batch(event("PLC-G1"), event("PLC-S1"), event("PLC-G2"), event("PLC-S2")))
    assert [r for _, r in result.dead_lettered] == ["handler-failed", "handler-failed"]
    assert await seen(pool) == {"PLC-G1": 54500, "PLC-G2": 54500}
    _, _, headers = (await dead_letters(pool))[0]
    assert "carried on" in dict(headers)[H + "error"].decode()
    # Last in its batch, with nothing after it to trip on: COMMIT alone would roll back quietly.
    last = await c.handle_batch(batch(event("PLC-G3"), event("PLC-S3")))
    assert ([r for _, r in last.dead_lettered], last.handled) == (["handler-failed"], 1)
    assert await seen(pool) == {"PLC-G1": 54500, "PLC-G2": 54500, "PLC-G3": 54500}


# ---------------------------------------------------------------------------------------- records


DEEP = b"[" * 5000 + b"]" * 5000


async def test_records_that_break_parsing_are_dead_lettered_and_the_batch_goes_on(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
) -> None:
    handler, batch = Handler(), Batch()
    good = event("PLC-G1")
    deep_data = json.dumps(good.to_dict()).encode().replace(b'"data": {', b'"deep": ' + DEEP + b', "data": {')
    binary_mode = (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"binary-1"),
        ("ce_source", partner_source(ODS).encode()),
        ("ce_type", PlacementMade.event_type().encode()),
        ("ce_time", b"2026-01-05T10:00:00Z"),
        ("content-type", b"application/json"),
    )
    overflow = event("PLC-OVERFLOW")

    def authorise(topic: str, e: Event[Any]) -> None:
        if e.id == overflow.id:
            raise OverflowError("date value out of range")

    records = [
        batch.raw(DEEP),
        batch.of(good),
        batch.raw(deep_data),
        batch.raw(DEEP, headers=binary_mode),
        batch.of(overflow),
        batch.of(event("PLC-G2")),
    ]
    result = await consumer(pool, handler, authorise=authorise).handle_batch(records)
    assert [r for _, r in result.dead_lettered] == [
        "malformed-json",
        "malformed-json",
        "malformed-json",
        "invalid-payload",
    ]
    assert result.handled == 2
    assert await seen(pool) == {"PLC-G1": 54500, "PLC-G2": 54500}
    letters = await dead_letters(pool)
    assert letters[0][1] == DEEP  # the original bytes
    assert "nests deeper than" in dict(letters[0][2])[H + "error"].decode()  # the contracts bound the depth
    assert "OverflowError" in dict(letters[3][2])[H + "error"].decode()


async def test_nul_bytes_in_headers_and_ids_are_dead_lettered_safely(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    handler, batch = Handler(), Batch()
    handler.fail("PLC-REFUSED", Rejected("not-party", "no"))
    odd_headers = (("x-trace", b"a\x00b"), ("bad\x00name", b"v\xff"))
    nul_id = event("PLC-NUL", id="id-with-\x00-inside")
    binary_nul = (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"id\x00"),
        ("ce_source", partner_source(ODS).encode()),
        ("ce_type", PlacementMade.event_type().encode()),
        ("ce_time", b"2026-01-05T10:00:00Z"),
        ("content-type", b"application/json"),
    )
    records = [
        batch.of(event("PLC-REFUSED"), headers=odd_headers),
        batch.raw(b"not json", headers=odd_headers),
        batch.of(nul_id),
        batch.raw(json.dumps(placement("PLC-BIN").model_dump(mode="json")).encode(), headers=binary_nul),
        batch.of(event("PLC-G1")),
    ]
    result = await consumer(pool, handler).handle_batch(records)
    assert [r for _, r in result.dead_lettered] == [
        "not-party",
        "malformed-json",
        "invalid-envelope",
        "invalid-envelope",
    ]
    assert await seen(pool) == {"PLC-G1": 54500}

    letters = await dead_letters(pool)
    _, _, headers = letters[0]
    assert headers[0] == ("content-type", b"application/cloudevents+json")
    assert headers[1] == ("x-trace", base64.b64encode(b"a\x00b"))
    assert headers[2] == ("bad\\x00name", base64.b64encode(b"v\xff"))
    assert dict(headers)[H + "base64-headers"] == b"1,2"
    _, _, binary = letters[3]
    encoded = [int(i) for i in dict(binary)[H + "base64-headers"].decode().split(",")]
    assert [base64.b64decode(binary[i][1]) for i in encoded] == [b"id\x00"]
    assert b"NUL" in dict(letters[2][2])[H + "error"]


async def test_a_huge_record_is_dead_lettered_as_a_stub_with_its_digest(pool: asyncpg.Pool) -> None:  # type: ignore[type-arg]
    batch = Batch()
    huge = b'{"specversion": "1.0", "junk": "' + b"x" * 900_000
    record = batch.raw(huge, headers=(("content-type", b"application/cloudevents+json"),))
    result = await consumer(pool, Handler()).handle_batch([record, batch.of(event("PLC-G1"))])
    assert [r for _, r in result.dead_lettered] == ["malformed-json"]
    [(key, value, headers)] = await dead_letters(pool)
    assert len(value) < 2_000
    stub = json.loads(value)
    assert stub["sha256"] == hashlib.sha256(huge).hexdigest()
    assert (stub["size"], stub["topic"], stub["partition"], stub["offset"]) == (len(huge), TOPIC, 0, record.offset)
    h = dict(headers)
    assert h[H + "truncated"] == b"value"
    assert h[H + "original-size"] == str(len(huge)).encode()
    assert h[H + "original-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert h[H + "reason"] == b"malformed-json"
    assert key == b"k"


async def test_a_known_type_without_a_handler_is_passed_over_unparsed_on_a_service_topic_only(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
) -> None:
    """The ``homeward-type`` header lets a consumer ignore, without parsing, the types it has no
    handler for, on topics Homeward's services write. A partner's header is not believed, and a
    type the contracts do not know is not passed over: those records are parsed and refused."""
    from homeward.contracts.envelope import TYPE_HEADER
    from homeward.contracts.events import ReferralReceived

    internal = Topics().internal("ingress")
    unhandled = ReferralReceived.event_type()

    def rec(topic: str, value: bytes, type_: str, offset: int) -> Record:
        return Record(
            topic,
            0,
            offset,
            b"k",
            value,
            (("content-type", b"application/cloudevents+json"), (TYPE_HEADER, type_.encode())),
        )

    handler = Handler()
    c = consumer(pool, handler)
    # Not JSON at all: parsing it would dead-letter it, so a record passed over is one never parsed.
    result = await c.handle_batch([rec(internal, b"not json", unhandled, 1)])
    assert (result.ignored, result.dead_lettered) == (1, [])
    # The same on a partner's topic is parsed, and refused.
    result = await c.handle_batch([rec(TOPIC, b"not json", unhandled, 2)])
    assert [reason for _, reason in result.dead_lettered] == ["malformed-json"]
    # A type the contracts do not know, and a type this consumer handles, are parsed too.
    result = await c.handle_batch([rec(internal, b"not json", "homeward.Nonsense.v9", 3)])
    assert [reason for _, reason in result.dead_lettered] == ["malformed-json"]
    result = await c.handle_batch([rec(internal, b"not json", PlacementMade.event_type(), 4)])
    assert [reason for _, reason in result.dead_lettered] == ["malformed-json"]
    assert handler.calls == Counter()
