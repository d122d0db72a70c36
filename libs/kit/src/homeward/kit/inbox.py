"""The inbox: idempotent handling keyed by (consumer, source, event id).

A redelivered or replayed event (the same content again) is recognised and skipped. An id
that comes back from the same source with different content is not a redelivery: the
partner has reused an id, and :class:`ConflictingDuplicate` says so (the consumer
dead-letters it) rather than silently dropping the second event.

The consumer claims a whole batch at once (:func:`claim_many`: one ``INSERT ... SELECT FROM
unnest`` and, only for the ids already there, one ``SELECT`` of their digests). A claim made
for an event that is then dead-lettered is taken back (:func:`release`), so an operator's
replay of the dead letter is handled again rather than skipped as a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg
from homeward.contracts import Event

from .identity import digest

Key = tuple[str, str]
"""(source, event id): what identifies one event for one consumer."""


class ConflictingDuplicate(Exception):
    def __init__(self, event: Event) -> None:  # type: ignore[type-arg]
        super().__init__(
            f"event id {event.id!r} from {event.source} was already used for a different {event.type} event; "
            "send each new event with a new id (resends keep the same id and the same content)"
        )


async def claim(conn: asyncpg.Connection, consumer: str, event: Event) -> bool:  # type: ignore[type-arg]
    """Record that ``consumer`` handles ``event``; False means it was handled before.

    Raises :class:`ConflictingDuplicate` when the id was handled before with other content."""
    mine = digest(event)
    claimed = await claim_many(conn, consumer, [Claim(event.source, event.id, event.type, mine)])
    if claimed.inserted:
        return True
    before = claimed.before.get((event.source, event.id))
    if before is not None and before != mine:
        raise ConflictingDuplicate(event)
    return False


@dataclass(frozen=True)
class Claim:
    source: str
    event_id: str
    event_type: str
    digest: str

    @property
    def key(self) -> Key:
        return (self.source, self.event_id)


@dataclass
class Claimed:
    """What :func:`claim_many` found: the keys it claimed now, and for every other key the digest
    it was claimed with before (None for a row from before digests were kept, or one that
    vanished between the two statements: both count as a plain duplicate)."""

    inserted: set[Key] = field(default_factory=set)
    before: dict[Key, str | None] = field(default_factory=dict)


async def claim_many(
    conn: asyncpg.Connection,  # type: ignore[type-arg]
    consumer: str,
    claims: Sequence[Claim],
) -> Claimed:
    """Claim every key in ``claims`` (unique keys) in one statement; read back the digests of
    those claimed before in a second one, only if there are any.

    Rows are inserted in key order, so two consumers claiming overlapping batches take their
    row locks in the same order and cannot deadlock on each other."""
    if not claims:
        return Claimed()
    ordered = sorted(claims, key=lambda c: (c.source, c.event_id))
    rows = await conn.fetch(
        """INSERT INTO inbox (consumer, source, event_id, event_type, digest)
           SELECT $1, c.source, c.event_id, c.event_type, c.digest
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
                AS c(source, event_id, event_type, digest)
           ON CONFLICT DO NOTHING
           RETURNING source, event_id""",
        consumer,
        [c.source for c in ordered],
        [c.event_id for c in ordered],
        [c.event_type for c in ordered],
        [c.digest for c in ordered],
    )
    out = Claimed(inserted={(r["source"], r["event_id"]) for r in rows})
    if len(out.inserted) == len(ordered):
        return out
    seen = [c.key for c in ordered if c.key not in out.inserted]
    before = await conn.fetch(
        """SELECT i.source, i.event_id, i.digest
           FROM unnest($2::text[], $3::text[]) AS c(source, event_id)
           JOIN inbox i ON i.consumer = $1 AND i.source = c.source AND i.event_id = c.event_id""",
        consumer,
        [s for s, _ in seen],
        [e for _, e in seen],
    )
    found = {(r["source"], r["event_id"]): r["digest"] for r in before}
    out.before = {k: found.get(k) for k in seen}
    return out


async def release(
    conn: asyncpg.Connection,  # type: ignore[type-arg]
    consumer: str,
    keys: Iterable[Key],
) -> None:
    """Take back claims (of events that were dead-lettered instead of handled)."""
    keys = sorted(keys)
    if not keys:
        return
    await conn.execute(
        """DELETE FROM inbox i USING unnest($2::text[], $3::text[]) AS c(source, event_id)
           WHERE i.consumer = $1 AND i.source = c.source AND i.event_id = c.event_id""",
        consumer,
        [s for s, _ in keys],
        [e for _, e in keys],
    )


async def reassign(
    conn: asyncpg.Connection,  # type: ignore[type-arg]
    consumer: str,
    claim: Claim,
) -> None:
    """Make an existing claim stand for other content (a later copy in the same batch that
    was handled after the first copy was dead-lettered)."""
    await conn.execute(
        "UPDATE inbox SET event_type = $4, digest = $5 WHERE consumer = $1 AND source = $2 AND event_id = $3",
        consumer,
        claim.source,
        claim.event_id,
        claim.event_type,
        claim.digest,
    )
