"""The transactional outbox and its relay.

Writers add rows in their own asyncpg transaction; a NOTIFY fires at commit and wakes
the relay, which also polls as a fallback. The relay publishes committed rows in id
order with an idempotent, acks=all producer and marks them published. Only one relay
per database publishes at a time (a session advisory lock), which keeps per-key order
when several replicas run; the others stand by and take over if it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from homeward.contracts import Event

from .logging import get_logger
from .metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED

CHANNEL = "homeward_outbox"
_RELAY_LOCK = 0x4F757462  # "Outb"

log = get_logger(__name__)

Headers = Sequence[tuple[str, bytes]]
SendFn = Callable[[str, bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[Any]]


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
    """Queue one record; False if an event with this id was already queued for this topic."""
    encoded = json.dumps([[k, v.decode("latin-1")] for k, v in headers])
    inserted = await conn.fetchval(
        """INSERT INTO outbox (topic, key, value, headers, event_id, event_type)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT (topic, event_id) WHERE event_id IS NOT NULL DO NOTHING
           RETURNING id""",
        topic,
        key,
        value,
        encoded,
        event_id,
        event_type,
    )
    if inserted is not None:
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return inserted is not None


async def add(conn: asyncpg.Connection, topic: str, event: Event) -> bool:  # type: ignore[type-arg]
    """Queue a CloudEvent (structured mode) for ``topic``, keyed by its aggregate."""
    key, value, headers = event.to_kafka()
    return await add_raw(conn, topic, key, value, headers, event_id=event.id, event_type=event.type)


def decode_headers(raw: str | list[Any]) -> list[tuple[str, bytes]]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return [(k, v.encode("latin-1")) for k, v in items]


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,  # type: ignore[type-arg]
        send: SendFn,
        *,
        service: str,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._send = send
        self._service = service
        self._batch_size = batch_size
        self._poll = poll_interval_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish one batch of committed rows; returns how many were published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, topic, key, value, headers FROM outbox
                   WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                self._batch_size,
            )
            if not rows:
                return 0
            # Send in id order; the idempotent producer keeps that order per partition.
            results = [
                await self._send(r["topic"], r["key"], bytes(r["value"]), decode_headers(r["headers"])) for r in rows
            ]
            for fut in results:
                if asyncio.isfuture(fut):
                    await fut
            await conn.execute(
                "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        return len(rows)

    async def pending(self) -> int:
        async with self._pool.acquire() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))

    async def drain(self) -> int:
        total = 0
        while n := await self.publish_pending():
            total += n
        return total

    async def run(self) -> None:
        """Run until stopped: hold the relay lock, wake on NOTIFY or every poll interval."""
        while not self._stopping.is_set():
            try:
                await self._run_as_leader()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the relay must outlive Kafka or database outages
                log.warning("outbox relay error; retrying", error=str(exc))
                with contextlib.suppress(Exception):  # what waits for Kafka, for the on-call dashboard
                    OUTBOX_PENDING.labels(self._service).set(await self.pending())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=min(5.0, self._poll * 2))

    async def _run_as_leader(self) -> None:
        conn = await self._pool.acquire()
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._poll)
                if self._stopping.is_set():
                    return
            await conn.add_listener(CHANNEL, self._on_notify)
            try:
                while not self._stopping.is_set():
                    published = await self.publish_pending()
                    if published:
                        continue
                    OUTBOX_PENDING.labels(self._service).set(0)
                    self._wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(CHANNEL, self._on_notify)
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1)", _RELAY_LOCK)
        finally:
            await self._pool.release(conn)

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
