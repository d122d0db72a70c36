"""The ingress's unit of work over one PostgreSQL transaction: the HTTP receipts, and the outbox
that forwards partner events on the ingress's own topic."""

from __future__ import annotations

from typing import Any

import asyncpg
from homeward.contracts import Event
from homeward.kit import outbox
from homeward.kit.topics import Topics

from ..domain.forwarding import outbox_id
from ..ports import SERVICE, ForwardQueue, IngressUnitOfWork
from .receipts import PgReceiptRepository


class PgForwardQueue(ForwardQueue):
    """The partner's record is queued in structured mode as it came (not rebuilt as a new event
    of the ingress's, as ``uow.publish`` would), so every downstream inbox still de-duplicates
    on the partner's (source, id)."""

    def __init__(self, conn: asyncpg.Connection, topics: Topics) -> None:  # type: ignore[type-arg]
        self.conn = conn
        self.topics = topics

    async def add(self, event: Event[Any]) -> bool:
        key, value, headers = event.to_kafka()
        return await outbox.add_raw(
            self.conn,
            self.topics.internal(SERVICE),
            key,
            value,
            headers,
            event_id=outbox_id(event),
            event_type=event.type,
        )


class PgIngressUnitOfWork(IngressUnitOfWork):
    def __init__(self, conn: asyncpg.Connection, *args: Any, **kwargs: Any) -> None:  # type: ignore[type-arg]
        super().__init__(conn, *args, **kwargs)
        self.receipts = PgReceiptRepository(conn)
        self.forwarded = PgForwardQueue(conn, self.topics)
