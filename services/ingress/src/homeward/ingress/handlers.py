"""What the ingress does with an accepted partner event: republish it for the services.

By the time a handler runs, the kit has parsed and validated the record against the
contracts, checked that the partner wrote on its own topic and only inbound types, and
claimed (source, id) in the inbox, so a resend is skipped and a reused id with other content
is dead-lettered once, here. What is left is to queue the event, in the same transaction,
for ``homeward.ingress.v1``.

The republished record is the partner's event in structured mode: its ``source``, ``id``,
``time``, ``subject``, correlation and payload are kept, so every downstream inbox still
de-duplicates on the partner's (source, id) and every decision still knows which
organisation asserted it. Whatever else the partner's record carried (its own headers, a
binary-mode layout, whitespace) is not copied: downstream services read only what the
contracts define, written by Homeward. Headers named ``homeward-*`` are Homeward's own: the kit
drops every one a partner's record carries before anything reads it
(``homeward.kit.consumer.without_untrusted_headers``), so a partner can neither pose as
dead-letter metadata nor have such a header kept in a dead letter or sent back by a replay.

The key is the entity the event is about (``Payload.key()``), so one entity's events stay in
order on one partition:

==========================  ==================
event                       key
==========================  ==================
ReferralReceived            referral_id
BedAvailabilityUpdated      site
PlacementMade, PlacementRateChanged, ReviewCompleted, PlacementEnded   placement_id
BudgetAllocated, InvoiceReceived   commissioner
==========================  ==================
"""

from __future__ import annotations

from typing import Any

from homeward.contracts import Event, Payload
from homeward.contracts.events import INBOUND
from homeward.kit import outbox
from homeward.kit.consumer import Handler, UnitOfWork

SERVICE = "ingress"


def outbox_id(event: Event[Any]) -> str:
    """The outbox's de-duplication key: CloudEvents ids are unique per source only."""
    return f"{event.source} {event.id}"


async def accept(event: Event[Any], uow: UnitOfWork[Any]) -> None:
    key, value, headers = event.to_kafka()
    await outbox.add_raw(
        uow.conn,
        uow.topics.internal(SERVICE),
        key,
        value,
        headers,
        event_id=outbox_id(event),
        event_type=event.type,
    )


def build_handlers() -> dict[type[Payload], Handler]:
    """Every inbound event type is accepted the same way; anything else was refused before."""
    return dict.fromkeys(INBOUND, accept)
