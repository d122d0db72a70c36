"""Recipients, subscriptions and routing: who hears about what.

A recipient hears about an alert when all of these hold: they are active; their organisation
is one the alert concerns (the commissioner, a co-funding commissioner, or the provider it
names); one of their subscriptions is for the alert's event type, covers its escalation level,
and is not opted out. Each recipient gets at most one email per event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from homeward.contracts.vocab import Role
from homeward.kit.identity import stable_id

from .alerts import Alert


@dataclass(frozen=True)
class Recipient:
    id: int
    email: str
    organisation: str
    role: Role
    display_name: str | None = None
    digest: bool = False
    active: bool = True


@dataclass(frozen=True)
class Subscription:
    recipient_id: int
    event_type: str
    min_escalation_level: int = 1
    max_escalation_level: int | None = None
    opted_out_at: dt.datetime | None = None

    def covers(self, event_type: str, level: int) -> bool:
        if self.opted_out_at is not None or self.event_type != event_type:
            return False
        return self.min_escalation_level <= level and (
            self.max_escalation_level is None or level <= self.max_escalation_level
        )


@dataclass(frozen=True)
class DefaultRoute:
    """The routing policy: which role hears about which event type at which levels."""

    event_type: str
    role: Role
    min_escalation_level: int = 1
    max_escalation_level: int | None = None


@dataclass(frozen=True)
class Candidate:
    recipient: Recipient
    subscription: Subscription


def route(alert: Alert, candidates: Iterable[Candidate]) -> list[Recipient]:
    """The recipients an alert goes to, once each, in a stable order."""
    chosen: dict[int, Recipient] = {}
    for c in candidates:
        r = c.recipient
        if not r.active or r.organisation not in alert.organisations:
            continue
        if c.subscription.recipient_id != r.id:
            continue
        if c.subscription.covers(alert.name, alert.escalation_level):
            chosen.setdefault(r.id, r)
    return [chosen[k] for k in sorted(chosen)]


def defaults_for(role: Role, routes: Iterable[DefaultRoute]) -> list[DefaultRoute]:
    return sorted((r for r in routes if r.role == role), key=lambda r: r.event_type)


def notification_id(event_id: str, recipient_id: int) -> str:
    return stable_id("notification", event_id, recipient_id)


def digest_id(recipient_id: int, digest_date: dt.date) -> str:
    return stable_id("digest", recipient_id, digest_date.isoformat())


def message_id(email_id: str) -> str:
    """The RFC 5322 Message-ID: the same for every attempt, so a resend can be recognised."""
    return f"<{email_id}@homeward>"


def retry_delay_s(attempts: int, base_s: float, max_s: float) -> float:
    """Exponential backoff after ``attempts`` failed attempts (1 -> base, 2 -> 2 x base...)."""
    return min(max_s, base_s * 2 ** max(0, attempts - 1))
