"""How the consumer reads an exception, and what it stores for a dead letter (no infrastructure)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError
from homeward.kit.consumer import (
    DLQ_HEADER_PREFIX,
    InfrastructureError,
    Record,
    database_error_kind,
    dlq_headers,
    storable_dead_letter,
    storable_text,
)
from homeward.kit.outbox import decode_headers


class LockContention(ConnectionError):
    pass


def wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        raise inner
    except BaseException as exc:
        try:
            raise outer from exc
        except BaseException as caught:
            return caught


def raised_while_handling(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        raise inner
    except BaseException:
        try:
            raise outer from None
        except BaseException as caught:
            return caught


E = asyncpg.exceptions


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (E.DeadlockDetectedError("deadlock"), "transient"),
        (E.SerializationError("serialize"), "transient"),
        (E.TransactionRollbackError("40000"), "transient"),
        (E.OutOfMemoryError("53200"), "transient"),
        (E.DiskFullError("53100"), "transient"),
        (E.QueryCanceledError("57014"), "transient"),
        (E.PostgresIOError("58030"), "transient"),
        (E.AdminShutdownError("57P01"), "platform"),
        (E.CrashShutdownError("57P02"), "platform"),
        (E.CannotConnectNowError("57P03"), "platform"),
        (E.ConnectionDoesNotExistError("08003"), "platform"),
        (asyncpg.PostgresConnectionError("08000"), "platform"),
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), "platform"),
        (asyncpg.InterfaceError("pool is closing"), "platform"),
        (InfrastructureError("down"), "platform"),
        (KafkaConnectionError("no broker"), "platform"),
        (E.InFailedSQLTransactionError("25P02"), "aborted"),
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), None),
        (E.UniqueViolationError("23505"), None),
        (E.CharacterNotInRepertoireError("22021"), None),
        (OSError("refused"), None),
        (TimeoutError(), None),
        (ValueError("bug"), None),
        (wrapped(LockContention("deadlock waiting for a lock"), E.DeadlockDetectedError("d")), "transient"),
        (wrapped(RuntimeError("lost"), E.ConnectionDoesNotExistError("08003")), "platform"),
        (raised_while_handling(ValueError("hid it"), E.SerializationError("s")), "transient"),
    ],
)
def test_what_an_exception_says_about_the_platform(exc: BaseException, kind: str | None) -> None:
    assert database_error_kind(exc) == kind


def test_a_cycle_of_causes_ends() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert database_error_kind(a) is None


def record(value: bytes | None, headers: tuple[tuple[str, bytes], ...] = (), key: bytes | None = b"k") -> Record:
    return Record("partner.RYG.events", 3, 42, key, value, headers)


def as_stored(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Through the outbox's own encoding (jsonb rejects \\u0000 and lone surrogates) and back."""
    text = json.dumps([[k, v.decode("latin-1")] for k, v in headers])
    assert "\\u0000" not in text
    text.encode("utf-8")  # no lone surrogates
    return decode_headers(text)


def test_header_names_and_values_the_outbox_cannot_hold_are_escaped_and_base64_encoded() -> None:
    headers = (("plain", b"\x01\xff ok"), ("x-nul", b"a\x00b"), ("n\x00me", b"v"), ("sur\udc80", b"w"))
    stored = storable_dead_letter(record(b"{}", headers), 1024)
    assert stored.headers == [
        ("plain", b"\x01\xff ok"),
        ("x-nul", base64.b64encode(b"a\x00b")),
        ("n\\x00me", base64.b64encode(b"v")),
        ("sur\\udc80", base64.b64encode(b"w")),
    ]
    assert stored.extra == {"base64_headers": "1,2,3"}
    assert as_stored(stored.headers) == stored.headers


def test_dlq_headers_are_storable_whatever_the_error_says() -> None:
    headers = dlq_headers(
        "handler-failed",
        "bad \x00 and \udcff and 9990000018",
        service="placements",
        topic="partner.RYG.events",
        at=dt.datetime(2026, 1, 6, tzinfo=dt.UTC),
        truncated="value",
    )
    back = dict(as_stored(headers))
    assert back[DLQ_HEADER_PREFIX + "error"] == b"bad \\x00 and \\udcff and [REDACTED-NHS-NUMBER]"
    assert back[DLQ_HEADER_PREFIX + "truncated"] == b"value"
    assert storable_text("fine é") == "fine é"


def test_a_value_over_the_limit_is_replaced_by_a_stub_naming_its_digest() -> None:
    value = b"x" * 5000
    stored = storable_dead_letter(record(value), 4096)
    stub = json.loads(stored.value)
    assert stub["sha256"] == hashlib.sha256(value).hexdigest()
    assert (stub["size"], stub["topic"], stub["partition"], stub["offset"]) == (5000, "partner.RYG.events", 3, 42)
    assert stored.extra["truncated"] == "value"
    assert stored.extra["original_size"] == "5000"
    assert stored.key == b"k"
    assert storable_dead_letter(record(b"x" * 4096), 4096).value == b"x" * 4096  # at the limit: kept


def test_a_key_or_headers_over_the_limit_are_replaced_too() -> None:
    big = b"k" * 5000
    stored = storable_dead_letter(record(b"{}", (("h", b"v" * 5000),), key=big), 4096)
    assert stored.key == b"sha256:" + hashlib.sha256(big).hexdigest().encode()
    assert stored.headers == []
    assert "headers" in stored.extra["truncated"] and "key" in stored.extra["truncated"]
    assert stored.value == b"{}"
    assert storable_dead_letter(record(None), 4096).value == b""
