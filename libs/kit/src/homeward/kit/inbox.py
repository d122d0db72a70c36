"""The inbox: idempotent handling keyed by (consumer, source, event id).

A redelivered or replayed event (the same content again) is recognised and skipped. An id
that comes back from the same source with different content is not a redelivery: the
partner has reused an id, and :class:`ConflictingDuplicate` says so (the consumer
dead-letters it) rather than silently dropping the second event.
"""

from __future__ import annotations

import hashlib
import json

import asyncpg
from homeward.contracts import Event


class ConflictingDuplicate(Exception):
    def __init__(self, event: Event) -> None:  # type: ignore[type-arg]
        super().__init__(
            f"event id {event.id!r} from {event.source} was already used for a different {event.type} event; "
            "send each new event with a new id (resends keep the same id and the same content)"
        )


def digest(event: Event) -> str:  # type: ignore[type-arg]
    """What makes two events with one id the same event: type, subject and payload."""
    content = {"type": event.type, "subject": event.subject, "data": event.data.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def claim(conn: asyncpg.Connection, consumer: str, event: Event) -> bool:  # type: ignore[type-arg]
    """Record that ``consumer`` handles ``event``; False means it was handled before.

    Raises :class:`ConflictingDuplicate` when the id was handled before with other content."""
    mine = digest(event)
    row = await conn.fetchval(
        """INSERT INTO inbox (consumer, event_id, event_type, source, digest) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT DO NOTHING RETURNING 1""",
        consumer,
        event.id,
        event.type,
        event.source,
        mine,
    )
    if row is not None:
        return True
    before = await conn.fetchval(
        "SELECT digest FROM inbox WHERE consumer = $1 AND source = $2 AND event_id = $3",
        consumer,
        event.source,
        event.id,
    )
    if before is not None and before != mine:
        raise ConflictingDuplicate(event)
    return False
