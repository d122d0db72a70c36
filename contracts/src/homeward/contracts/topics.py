"""Kafka topic names and key conventions: the one declared list.

Partner organisations each write to their own topic, ``partner.<ODS>.events``, which only
the ingress reads; it republishes the events it accepts on ``homeward.ingress.v1``, keyed by
the entity they are about (referral, placement, site or commissioner). Services publish
normalised facts on ``homeward.<service>.v1`` and park what they cannot process on
``homeward.dlq.<service>``. Keys keep one aggregate's events in order: the placement id, the
referral id, the site, or the commissioner's ODS code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# The ingress is the only reader of partner topics: it validates partner input once and
# republishes what it accepts on its own topic, which referrals, placements and budget read.
INGRESS = "ingress"
SERVICES: tuple[str, ...] = (INGRESS, "referrals", "placements", "budget", "notifications")

PARTNER_TOPIC_PATTERN = r"partner\.[A-Z0-9]{3,9}\.events"
_PARTNER_TOPIC_RE = re.compile(r"^partner\.(?P<ods>[A-Z0-9]{3,9})\.events$")

# What each service reads besides partner input: other services' topics. The ingress alone reads
# the partner topics (by pattern). Each service's entrypoints/app.py SUBSCRIPTIONS must say the
# same (a test checks), and the Kafka ACLs (homeward.contracts.access) grant exactly this.
CONSUMES: dict[str, tuple[str, ...]] = {
    INGRESS: (),
    "referrals": (INGRESS, "placements"),
    "placements": (INGRESS, "referrals"),
    "budget": (INGRESS, "placements"),
    "notifications": ("placements", "referrals", "budget"),
}

# How a service keys what it publishes on its own topic, where not by the event's own entity
# (``Payload.key()``). Placements keys every event by the placement's commissioner: a
# placement's commissioner never changes, so its events still stay in order, and budget, which
# posts per commissioner, then finds one commissioner's placements (on ``homeward.placements.v1``)
# and its allocations and invoices (keyed by commissioner on ``homeward.ingress.v1``) on the
# same partition number of the two topics. Both topics have DEFAULT_PARTITIONS partitions and
# the same partitioner, and the kit gives each replica a client id that sorts the same way in
# both of budget's consumer groups, so each budget replica is given the same partition numbers
# of both: replicas own disjoint commissioners and post side by side (docs/budget.md).
KEYED_BY: dict[str, str] = {"placements": "commissioner"}


def publish_key(service: str, data: Any) -> str:
    """The Kafka key ``service`` gives ``data`` (a contracts Payload) on its own topic."""
    field = KEYED_BY.get(service)
    value = getattr(data, field, None) if field else None
    return str(value) if value else str(data.key())


DEFAULT_PARTITIONS = 6
# A partner topic has one partition. One partner's events are few (a national replay is about 300
# events per partner), so more partitions would add no throughput, while every partition of every
# partner topic is one more entry in each of the ingress's fetch requests and responses: with six
# per topic and 382 partners, decoding those (empty) entries took a quarter of the ingress's CPU.
# One partition also keeps each partner's events in the order it sent them, whatever the key.
PARTNER_PARTITIONS = 1

# Dead-letter topics hold partner records as they came, NHS numbers included, so they are not
# kept for ever: 14 days unless the operator configures otherwise (docs/operations.md says how
# to keep one message longer).
DLQ_RETENTION_DAYS = 14
DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = DEFAULT_PARTITIONS
    retention_ms: int | None = None
    purpose: str = ""


def partner_topic(ods_code: str) -> str:
    """The topic a partner organisation writes to."""
    return f"partner.{ods_code.upper()}.events"


def partner_of(topic: str) -> str | None:
    """The ODS code a partner topic belongs to, or None for any other topic."""
    match = _PARTNER_TOPIC_RE.match(topic)
    return match.group("ods") if match else None


def partner_topic_spec(ods_code: str) -> TopicSpec:
    return TopicSpec(partner_topic(ods_code), PARTNER_PARTITIONS, purpose=f"events written by partner {ods_code}")


def internal_topic(service: str) -> str:
    return f"homeward.{service}.v1"


def dead_letter_topic(service: str) -> str:
    return f"homeward.dlq.{service}"


def declared_topics(
    partners: tuple[str, ...] = (), *, dlq_retention_days: float = DLQ_RETENTION_DAYS
) -> list[TopicSpec]:
    """Every topic the system needs, plus one topic per named partner. Dead-letter topics keep
    their records ``dlq_retention_days`` (0 or less: for ever)."""
    topics = [
        TopicSpec(
            internal_topic(s),
            purpose="partner events accepted by the ingress (partner data: NHS numbers included)"
            if s == INGRESS
            else f"facts published by the {s} service",
        )
        for s in SERVICES
    ]
    topics += [
        TopicSpec(
            dead_letter_topic(s),
            partitions=1,
            retention_ms=int(dlq_retention_days * DAY_MS) if dlq_retention_days > 0 else -1,
            purpose=f"messages the {s} service could not process, with the reason in headers",
        )
        for s in SERVICES
    ]
    topics += [partner_topic_spec(p) for p in partners]
    return topics
