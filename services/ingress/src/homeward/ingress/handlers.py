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

import dataclasses
from typing import Any

from homeward.contracts import Event, Payload
from homeward.contracts.access import PRINCIPAL_EXTENSION, partner_principal
from homeward.contracts.envelope import MAX_EXTENSIONS
from homeward.contracts.events import INBOUND
from homeward.kit import outbox
from homeward.kit.consumer import Handler, UnitOfWork

SERVICE = "ingress"


def outbox_id(event: Event[Any]) -> str:
    """The outbox's de-duplication key: CloudEvents ids are unique per source only."""
    return f"{event.source} {event.id}"


async def principal(event: Event[Any], uow: UnitOfWork[Any]) -> str:
    """Who could have written the record: the partner's own Kafka user, or the API key it was
    posted over HTTP with (the ingress wrote those onto the partner's topic)."""
    key_id = await uow.conn.fetchval(
        "SELECT key_id FROM http_receipts WHERE source = $1 AND event_id = $2", event.source, event.id
    )
    if key_id:
        return f"apikey:{key_id}"
    return f"User:{partner_principal(event.organisation or 'unknown', uow.topics.namespace)}"


async def accept(event: Event[Any], uow: UnitOfWork[Any]) -> None:
    who = await principal(event, uow)
    # The partner's own extensions, less any it called "principal", and fewer by one if it used
    # the whole allowance, so the forwarded event stays within the contracts' bound.
    own = sorted((k, v) for k, v in event.extensions.items() if k != PRINCIPAL_EXTENSION)[: MAX_EXTENSIONS - 1]
    named = dataclasses.replace(event, extensions={**dict(own), PRINCIPAL_EXTENSION: who})
    key, value, headers = named.to_kafka()
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
