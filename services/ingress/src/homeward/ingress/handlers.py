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

Each forwarded event names its principal in the CloudEvents extension ``principal``
(``homeward.contracts.access.PRINCIPAL_EXTENSION``): ``User:<ODS>``, the only Kafka user that may
write the partner's topic, or ``apikey:<key id>`` for an event posted over HTTP. A value the
partner sent is replaced.

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

from homeward.contracts import Event
from homeward.contracts.events import INBOUND
from homeward.kit.uow import handler_table

from .domain.forwarding import naming, principal
from .ports import SERVICE, IngressUnitOfWork

__all__ = ["HANDLERS", "SERVICE", "accept"]


async def accept(event: Event[Any], uow: IngressUnitOfWork) -> None:
    who = principal(event, await uow.receipts.key_id(event.source, event.id), uow.topics.namespace)
    await uow.forwarded.add(naming(event, who))


# Every inbound event type is accepted the same way; anything else was refused before.
HANDLERS = handler_table(dict.fromkeys(INBOUND, accept))
