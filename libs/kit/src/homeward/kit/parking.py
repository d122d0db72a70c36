"""The parking lot: events that need an aggregate not yet seen, kept with the event itself,
a reason and an expiry, in every service's database (kit migration 0006, ``parking_lot``).

A handler parks an event with ``uow.park(event, awaiting="placement:P1", reason=...)``; the
handler that makes ``placement:P1`` appear calls ``uow.retry_parked("placement:P1")``, which
runs each parked event through the service's handler table again (homeward.kit.uow). An entry
still parked after ``parking_expiry_days`` is dead-lettered by the kit's ``parking-expiry`` job
with the reason ``parked-expired``, and so is one the handler refuses when it is retried: either
way it ends on the service's dead-letter topic, where ``homeward dlq`` shows and replays it (the
service's inbox forgets the event then, so a replay is handled, not skipped as a redelivery).

Every entry ends ``applied``, ``rejected`` or ``expired`` and is kept (``homeward parked``,
``GET /admin/parked``), so ops can see what waited, for what, and how it ended.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from homeward.contracts import Event, parse_json

from . import outbox
from .clock import Clock
from .deadletter import dlq_headers, signed_dlq_headers, storable_text
from .topics import Topics

Status = Literal["parked", "applied", "rejected", "expired"]
STATUSES: tuple[Status, ...] = ("parked", "applied", "rejected", "expired")
EXPIRED_REASON = "parked-expired"


@dataclass(frozen=True)
class Parked:
    id: int
    event_id: str
    source: str
    awaiting: str
    event_type: str
    event_time: dt.datetime
    origin: str | None
    reason: str
    parked_at: dt.datetime
    expires_at: dt.datetime | None
    status: Status
    resolved_at: dt.datetime | None
    resolution: str | None
    raw: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.event_id)

    def event(self) -> Event[Any]:
        """The parked event, parsed and validated again by the contracts."""
        return parse_json(self.raw)

    def to_json(self, *, with_event: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "source": self.source,
            "awaiting": self.awaiting,
            "event_type": self.event_type,
            "event_time": self.event_time.isoformat(),
            "origin": self.origin,
            "reason": self.reason,
            "parked_at": self.parked_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "status": self.status,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolution": self.resolution,
        }
        if with_event:
            out["event"] = json.loads(self.raw)
        return out


def _from_row(r: asyncpg.Record) -> Parked:
    return Parked(
        id=r["id"],
        event_id=r["event_id"],
        source=r["source"],
        awaiting=r["awaiting"],
        event_type=r["event_type"],
        event_time=r["event_time"],
        origin=r["origin"],
        reason=r["reason"],
        parked_at=r["parked_at"],
        expires_at=r["expires_at"],
        status=r["status"],
        resolved_at=r["resolved_at"],
        resolution=r["resolution"],
        raw=r["event"],
    )


class ParkingLot:
    """The parking lot of one service, in the open transaction of ``conn``."""

    def __init__(
        self,
        conn: asyncpg.Connection,  # type: ignore[type-arg]
        *,
        service: str,
        clock: Clock,
        topics: Topics | None = None,
        dead_letter_key: bytes | None = None,
        expiry: dt.timedelta | None = None,
    ) -> None:
        self.conn = conn
        self.service = service
        self.clock = clock
        self.topics = topics or Topics()
        self.dead_letter_key = dead_letter_key
        self.expiry = expiry
        # (source, id) of what was parked through this lot: retry_parked tells "parked again".
        self.parked_now: set[tuple[str, str]] = set()

    async def park(self, event: Event[Any], *, awaiting: str, reason: str, origin: str | None = None) -> bool:
        """Park ``event`` until ``awaiting`` appears; False if it was parked already (a
        redelivery, or a retry that still waits), which leaves the entry as it was."""
        now = self.clock.now()
        inserted = await self.conn.fetchval(
            """INSERT INTO parking_lot (event_id, source, awaiting, event_type, event_time, origin, reason,
                                        parked_at, expires_at, status, event)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'parked', $10)
               ON CONFLICT (source, event_id) DO UPDATE SET awaiting = EXCLUDED.awaiting, reason = EXCLUDED.reason
                   WHERE parking_lot.status = 'parked'
               RETURNING (xmax = 0)""",
            event.id,
            event.source,
            awaiting,
            event.type,
            event.time,
            origin,
            reason,
            now,
            now + self.expiry if self.expiry is not None else None,
            event.to_json().decode(),
        )
        self.parked_now.add((event.source, event.id))
        return bool(inserted)

    async def waiting(self, awaiting: str) -> list[Parked]:
        """What waits for ``awaiting``, oldest fact first, locked until the transaction ends."""
        rows = await self.conn.fetch(
            """SELECT * FROM parking_lot WHERE awaiting = $1 AND status = 'parked'
               ORDER BY event_time, id FOR UPDATE""",
            awaiting,
        )
        return [_from_row(r) for r in rows]

    async def resolve(self, parked: Parked, status: Status, resolution: str) -> None:
        await self.conn.execute(
            "UPDATE parking_lot SET status = $2, resolution = $3, resolved_at = $4 WHERE id = $1",
            parked.id,
            status,
            resolution,
            self.clock.now(),
        )

    async def reject(self, parked: Parked, reason: str, message: str) -> None:
        """Dead-letter a parked event the handler refused, with the reason; mark it rejected."""
        await self.dead_letter(parked, reason, message)
        await self.resolve(parked, "rejected", f"{reason}: {message}")

    async def dead_letter(self, parked: Parked, reason: str, message: str) -> None:
        """Send ``parked`` to the service's dead-letter topic with the reason, and forget that
        the service took it (its inbox claim), so ``homeward dlq replay`` is handled anew."""
        await self.conn.execute("DELETE FROM inbox WHERE source = $1 AND event_id = $2", parked.source, parked.event_id)

        metadata = dlq_headers(
            reason,
            message,
            service=self.service,
            topic=parked.origin or f"{self.service} parking lot",
            at=self.clock.now(),
            parked_at=parked.parked_at.isoformat(),
            awaiting=parked.awaiting,
        )
        key = parked.awaiting.encode()
        value = parked.raw.encode()
        headers = signed_dlq_headers(self.dead_letter_key, metadata, record_key=key, value=value, headers=())
        await outbox.add_raw(
            self.conn,
            self.topics.dlq(self.service),
            key,
            value,
            headers,
            event_id=storable_text(f"dlq:parked:{parked.source}:{parked.event_id}"),
            event_type="dead-letter",
        )


async def expire(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    *,
    service: str,
    clock: Clock,
    topics: Topics,
    dead_letter_key: bytes | None,
    batch_size: int = 1000,
) -> int:
    """Dead-letter every entry whose expiry has passed (``parked-expired``); how many."""
    done = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT * FROM parking_lot WHERE status = 'parked' AND expires_at <= $1
                   ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED""",
                clock.now(),
                batch_size,
            )
            lot = ParkingLot(conn, service=service, clock=clock, topics=topics, dead_letter_key=dead_letter_key)
            for parked in map(_from_row, rows):
                waited = clock.now() - parked.parked_at
                message = f"{parked.event_type} waited {waited.days} day(s) for {parked.awaiting}, which never appeared"
                await lot.dead_letter(parked, EXPIRED_REASON, message)
                await lot.resolve(parked, "expired", f"{EXPIRED_REASON}: {message}")
        done += len(rows)
        if len(rows) < batch_size:
            return done


async def listing(
    conn: asyncpg.Connection,  # type: ignore[type-arg]
    *,
    statuses: Sequence[str] = ("parked",),
    awaiting: str | None = None,
    limit: int = 1000,
) -> tuple[list[Parked], dict[str, int]]:
    """Entries in these statuses (newest first, at most ``limit``) and the count of each status."""
    rows = await conn.fetch(
        """SELECT * FROM parking_lot WHERE status = ANY($1::text[]) AND ($2::text IS NULL OR awaiting = $2)
           ORDER BY id DESC LIMIT $3""",
        list(statuses),
        awaiting,
        limit,
    )
    counts = {r["status"]: r["n"] for r in await conn.fetch("SELECT status, count(*) AS n FROM parking_lot GROUP BY 1")}
    return [_from_row(r) for r in rows], {s: int(counts.get(s, 0)) for s in STATUSES}
