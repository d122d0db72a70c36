"""The ingress's handler over a fake unit of work (no database, no Kafka): it forwards the
partner's own event and names the principal that could have written it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from front_door_support import AT, allocation, event
from homeward.contracts import Event
from homeward.contracts.access import PRINCIPAL_EXTENSION, partner_principal
from homeward.contracts.envelope import MAX_EXTENSIONS
from homeward.ingress.domain.admission import Admitted
from homeward.ingress.handlers import HANDLERS, SERVICE
from homeward.ingress.ports import ForwardQueue, IngressUnitOfWork, ReceiptRepository, Recorded
from homeward.kit.clock import FixedClock
from homeward.kit.topics import Topics

NAMESPACE = "t-fake."


class FakeReceipts(ReceiptRepository):
    def __init__(self, posted: dict[tuple[str, str], str]) -> None:
        self.posted = posted

    async def record(self, topic: str, ods: str, events: Sequence[Admitted], key_id: str | None = None) -> Recorded:
        raise NotImplementedError  # the HTTP front door's, not the handler's

    async def key_id(self, source: str, event_id: str) -> str | None:
        return self.posted.get((source, event_id))


class FakeForwards(ForwardQueue):
    def __init__(self) -> None:
        self.events: list[Event[Any]] = []

    async def add(self, event: Event[Any]) -> bool:
        if any((e.source, e.id) == (event.source, event.id) for e in self.events):
            return False
        self.events.append(event)
        return True


class FakeUnitOfWork(IngressUnitOfWork):
    def __init__(self, posted: dict[tuple[str, str], str] | None = None) -> None:
        super().__init__(None, SERVICE, FixedClock(AT), topics=Topics(NAMESPACE))  # type: ignore[arg-type]
        self.receipts = FakeReceipts(posted or {})
        self.forwarded = FakeForwards()


async def test_an_event_from_kafka_is_forwarded_as_it_came_naming_the_partners_kafka_user() -> None:
    uow = FakeUnitOfWork()
    sent = event("05A", allocation("05A"), id="k-1")
    await HANDLERS[type(sent.data)](sent, uow)
    [forwarded] = uow.forwarded.events
    assert (forwarded.source, forwarded.id, forwarded.time, forwarded.data) == (sent.source, "k-1", AT, sent.data)
    assert forwarded.extensions[PRINCIPAL_EXTENSION] == f"User:{partner_principal('05A', NAMESPACE)}"


async def test_an_event_posted_over_http_names_the_api_key_and_a_forged_principal_is_replaced() -> None:
    sent = dataclasses.replace(
        event("05A", allocation("05A"), id="h-1"), extensions={PRINCIPAL_EXTENSION: "User:homeward-admin"}
    )
    uow = FakeUnitOfWork({(sent.source, "h-1"): "key123"})
    await HANDLERS[type(sent.data)](sent, uow)
    assert [e.extensions for e in uow.forwarded.events] == [{PRINCIPAL_EXTENSION: "apikey:key123"}]


async def test_a_partner_using_every_extension_keeps_the_forwarded_event_within_the_bound() -> None:
    full = dataclasses.replace(
        event("05A", allocation("05A"), id="x-1"), extensions={f"x{n:02d}": "v" for n in range(MAX_EXTENSIONS)}
    )
    uow = FakeUnitOfWork()
    await HANDLERS[type(full.data)](full, uow)
    [forwarded] = uow.forwarded.events
    assert len(forwarded.extensions) == MAX_EXTENSIONS
    assert forwarded.extensions[PRINCIPAL_EXTENSION].startswith("User:")
