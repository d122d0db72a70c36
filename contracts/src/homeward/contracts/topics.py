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

# The ingress is the only reader of partner topics: it validates partner input once and
# republishes what it accepts on its own topic, which referrals, placements and budget read.
INGRESS = "ingress"
SERVICES: tuple[str, ...] = (INGRESS, "referrals", "placements", "budget", "notifications")

PARTNER_TOPIC_PATTERN = r"partner\.[A-Z0-9]{3,9}\.events"
_PARTNER_TOPIC_RE = re.compile(r"^partner\.(?P<ods>[A-Z0-9]{3,9})\.events$")

DEFAULT_PARTITIONS = 6


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


def internal_topic(service: str) -> str:
    return f"homeward.{service}.v1"


def dead_letter_topic(service: str) -> str:
    return f"homeward.dlq.{service}"


def declared_topics(partners: tuple[str, ...] = ()) -> list[TopicSpec]:
    """Every topic the system needs, plus one topic per named partner."""
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
            retention_ms=-1,
            purpose=f"messages the {s} service could not process, with the reason in headers",
        )
        for s in SERVICES
    ]
    topics += [TopicSpec(partner_topic(p), purpose=f"events written by partner {p}") for p in partners]
    return topics
