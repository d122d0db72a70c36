"""Ports: what the ingress's use cases need from the outside world, and the unit of work its
handler is typed against. The asyncpg adapters are in ``adapters/``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts import Event
from homeward.kit.uow import UnitOfWork

from .domain.admission import Admitted

SERVICE = "ingress"

Key = tuple[str, str]


@dataclass
class Recorded:
    """Which of a request's events were new (queued now); the others were resends."""

    new: set[Key] = field(default_factory=set)
    resent: set[Key] = field(default_factory=set)


class ReusedIds(Exception):
    """Events whose (source, id) was taken before for different content."""

    def __init__(self, events: list[Admitted]) -> None:
        super().__init__(", ".join(f"{a.event.source} {a.event.id}" for a in events))
        self.events = events


class ReceiptRepository(ABC):
    """The receipts of events partners posted over HTTP (what makes ``POST /events`` idempotent)."""

    @abstractmethod
    async def record(self, topic: str, ods: str, events: Sequence[Admitted], key_id: str | None = None) -> Recorded:
        """A receipt for each new event and the event queued for the partner's ``topic``; raises
        :class:`ReusedIds` if any id was used before for other content."""

    @abstractmethod
    async def key_id(self, source: str, event_id: str) -> str | None:
        """The API key the event was posted with over HTTP; None if it did not come over HTTP."""


class ForwardQueue(ABC):
    """The ingress's own topic, ``homeward.ingress.v1``, as the outbox queues it."""

    @abstractmethod
    async def add(self, event: Event[Any]) -> bool:
        """Queue the partner's event as it is (its source, id, time and payload); False if it was
        queued before."""


class IngressUnitOfWork(UnitOfWork[Any]):
    """What the ingress's handler gets (homeward.kit.uow): the HTTP receipts and the queue of
    forwarded events, in the consuming transaction."""

    receipts: ReceiptRepository
    forwarded: ForwardQueue
