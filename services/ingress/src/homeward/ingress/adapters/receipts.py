"""HTTP receipts: what makes POST /events idempotent on the partner's (source, id).

A request's new events get a receipt and an outbox row for the partner's topic in one
transaction, so an event is either taken (and the relay, the kit's idempotent acks=all
producer, puts it on ``partner.<ODS>.events``) or not at all. An event whose receipt is there
already with the same digest (the kit's inbox digest: type, subject, data) is an exact
resend; with another digest, a reused id, and then nothing of the request is taken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg
from homeward.kit import outbox

from ..domain.admission import Admitted
from ..domain.forwarding import outbox_id
from ..ports import Key, ReceiptRepository, Recorded, ReusedIds

__all__ = ["PgReceiptRepository", "Recorded", "ReusedIds", "prune", "record"]


class PgReceiptRepository(ReceiptRepository):
    def __init__(self, conn: asyncpg.Connection) -> None:  # type: ignore[type-arg]
        self.conn = conn

    async def record(self, topic: str, ods: str, events: Sequence[Admitted], key_id: str | None = None) -> Recorded:
        return await record(self.conn, topic, ods, events, key_id)

    async def key_id(self, source: str, event_id: str) -> str | None:
        found: str | None = await self.conn.fetchval(
            "SELECT key_id FROM http_receipts WHERE source = $1 AND event_id = $2", source, event_id
        )
        return found


async def record(
    conn: asyncpg.Connection,  # type: ignore[type-arg]
    topic: str,
    ods: str,
    events: Sequence[Admitted],
    key_id: str | None = None,
) -> Recorded:
    """In the caller's transaction: a receipt and an outbox row for each new event (first copy
    of each (source, id)), in key order so that two requests cannot deadlock. Raises
    :class:`ReusedIds` (the caller rolls back) if any id was used before for other content."""
    unique: dict[Key, Admitted] = {}
    for a in events:
        unique.setdefault(a.ident, a)
    ordered = [unique[k] for k in sorted(unique)]
    rows = await conn.fetch(
        """INSERT INTO http_receipts (source, event_id, digest, event_type, ods, key_id)
           SELECT r.source, r.event_id, r.digest, r.event_type, $5, $6
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
                AS r(source, event_id, digest, event_type, n)
           ORDER BY r.n
           ON CONFLICT DO NOTHING
           RETURNING source, event_id""",
        [a.event.source for a in ordered],
        [a.event.id for a in ordered],
        [a.digest for a in ordered],
        [a.event.type for a in ordered],
        ods,
        key_id,
    )
    out = Recorded(new={(r["source"], r["event_id"]) for r in rows})
    seen = [a for a in ordered if a.ident not in out.new]
    if seen:
        before = await conn.fetch(
            """SELECT h.source, h.event_id, h.digest
               FROM unnest($1::text[], $2::text[]) AS k(source, event_id)
               JOIN http_receipts h ON h.source = k.source AND h.event_id = k.event_id""",
            [a.event.source for a in seen],
            [a.event.id for a in seen],
        )
        digests = {(r["source"], r["event_id"]): r["digest"] for r in before}
        reused = [a for a in seen if digests.get(a.ident, a.digest) != a.digest]
        if reused:
            raise ReusedIds(reused)
        out.resent = {a.ident for a in seen}
    for a in ordered:
        if a.ident in out.new:
            await outbox.add_raw(
                conn, topic, a.key, a.value, a.headers, event_id=outbox_id(a.event), event_type=a.event.type
            )
    return out


async def prune(pool: asyncpg.Pool, older_than: dt.timedelta, batch_size: int = 10_000) -> int:  # type: ignore[type-arg]
    """Delete receipts older than ``older_than`` (by the database's clock), ``batch_size`` a statement."""
    total = 0
    while True:
        async with pool.acquire() as conn:
            status = await conn.execute(
                """DELETE FROM http_receipts WHERE ctid IN (
                       SELECT ctid FROM http_receipts WHERE received_at < now() - $1::interval
                       ORDER BY received_at LIMIT $2)""",
                older_than,
                batch_size,
            )
        n = int(status.split()[-1])
        total += n
        if n < batch_size:
            return total
