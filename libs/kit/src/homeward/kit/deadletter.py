"""What a dead letter carries: its metadata headers, signed, as storable text. Pure (no I/O):
the consumer, the parking lot and the dead-letter tools use it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .crypto import dead_letter_mac
from .redaction import redact_text

DLQ_HEADER_PREFIX = "homeward-dlq-"  # reason, error, service, topic, partition, offset, at, mac; see below
DLQ_MAC_HEADER = DLQ_HEADER_PREFIX + "mac"


def signed_dlq_headers(
    key: bytes | None,
    metadata: list[tuple[str, bytes]],
    *,
    record_key: bytes | None,
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
) -> list[tuple[str, bytes]]:
    """``metadata`` (from :func:`dlq_headers`) followed by its ``homeward-dlq-mac``; without a
    key, ``metadata`` alone (such a dead letter is listed as unverified and cannot be replayed)."""
    if key is None:
        return metadata
    mac = dead_letter_mac(key, metadata, record_key=record_key, value=value, headers=headers)
    return [*metadata, (DLQ_MAC_HEADER, mac.encode())]


def storable_text(text: str) -> str:
    """``text`` as the outbox's jsonb can hold it: a NUL is written ``\\x00`` and a lone
    surrogate as its ``\\udXXX`` escape; any other text is returned as it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def dlq_headers(
    reason: str, error: str, *, service: str, topic: str, at: dt.datetime, **extra: str
) -> list[tuple[str, bytes]]:
    """The headers a dead letter carries: why (the error redacted of NHS numbers and cut to
    2,000 characters), which service refused it, where it came from (``extra`` adds more, such
    as partition and offset) and when. Every value is storable text (:func:`storable_text`)."""
    h = DLQ_HEADER_PREFIX

    def text(value: str) -> bytes:
        return storable_text(value).encode()

    return [
        (h + "reason", text(reason)),
        (h + "error", text(redact_text(error)[:2000])),
        (h + "service", text(service)),
        (h + "topic", text(topic)),
        *((h + name.replace("_", "-"), text(value)) for name, value in extra.items()),
        (h + "at", text(at.isoformat())),
    ]
