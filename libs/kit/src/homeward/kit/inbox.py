"""The inbox: idempotent handling keyed by (consumer, event id)."""

from __future__ import annotations

import asyncpg
from homeward.contracts import Event


async def claim(conn: asyncpg.Connection, consumer: str, event: Event) -> bool:  # type: ignore[type-arg]
    """Record that ``consumer`` handles ``event``; False means it was handled before."""
    row = await conn.fetchval(
        """INSERT INTO inbox (consumer, event_id, event_type, source) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING 1""",
        consumer,
        event.id,
        event.type,
        event.source,
    )
    return row is not None
