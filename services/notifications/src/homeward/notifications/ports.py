"""Ports: what the use cases need from the outside world, and the unit of work the handlers
are typed against. Each port has an asyncpg, SMTP or Jinja adapter in ``adapters/`` and an
in-memory fake in the tests."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts import Payload
from homeward.contracts.vocab import Role
from homeward.kit.uow import UnitOfWork

from .domain.alerts import Alert, AlertPolicy
from .domain.digest import DigestItem, DigestWindow
from .domain.model import Candidate, DefaultRoute, Recipient, Subscription
from .domain.recipients import RecipientSpec
from .domain.timeliness import Timeliness


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class OutgoingEmail:
    id: str
    message_id: str
    kind: str
    recipient_id: int
    to_address: str
    to_name: str | None
    subject: str
    body_text: str
    body_html: str
    created_at: dt.datetime
    digest_date: dt.date | None = None


@dataclass(frozen=True)
class QueuedEmail(OutgoingEmail):
    attempts: int = 0
    requeued: int = 0
    claim: str = ""  # the fencing token of this sender's claim: only its holder may send the email


@dataclass(frozen=True)
class NotificationRecord:
    id: str
    cause_event_id: str
    cause_event_type: str
    event_name: str
    correlation_id: str | None
    occurred_at: dt.datetime
    recipient_id: int
    email_address: str
    organisation: str
    role: Role
    reference: str
    escalation_level: int
    subject: str
    due_by: dt.date
    facts: tuple[tuple[str, str], ...]
    digest: bool
    email_id: str | None
    message_id: str | None
    recorded_at: dt.datetime
    # "pending" until sent or failed; "suppressed" (never emailed) when the action is history.
    status: str = "pending"
    late: bool = False  # due in the recent past: in the daily digest, whatever the recipient reads
    suppressed_reason: str | None = None


@dataclass(frozen=True)
class NotificationRef:
    """What NotificationSent/NotificationFailed say about one (event, recipient)."""

    id: str
    cause_event_id: str
    cause_event_type: str
    correlation_id: str | None
    organisation: str
    role: Role
    message_id: str


class Renderer(ABC):
    @abstractmethod
    def alert(self, alert: Alert) -> RenderedEmail: ...

    @abstractmethod
    def digest(self, date: dt.date, items: Sequence[DigestItem]) -> RenderedEmail: ...


class RecipientRepository(ABC):
    """Who might be told of an event: the consuming transaction's view of the directory."""

    @abstractmethod
    async def candidates(self, event_type: str, organisations: Collection[str]) -> list[Candidate]:
        """Active recipients in these organisations subscribed (not opted out) to the event type."""


class AlertRepository(ABC):
    """Where the consuming transaction records notifications (and the alert emails they send)."""

    @abstractmethod
    async def record(self, notification: NotificationRecord, email: OutgoingEmail | None) -> bool:
        """False if this (event, recipient) was recorded before."""


@dataclass(frozen=True)
class Config:
    """The service's rules: when each alert asks for a response, and when an alert is history."""

    policy: AlertPolicy = field(default_factory=AlertPolicy)
    timeliness: Timeliness = field(default_factory=Timeliness)


class NotificationsUnitOfWork(UnitOfWork[Any]):
    """What a handler gets (homeward.kit.uow): the recipients it may tell, where it records the
    alerts, the renderer of alert emails and the service's rules, in the consuming transaction."""

    recipients: RecipientRepository
    alerts: AlertRepository
    renderer: Renderer
    config: Config


class Settlement(ABC):
    """One transaction that settles an email's outcome and publishes what it caused."""

    @abstractmethod
    async def mark_sent(self, email_id: str, at: dt.datetime) -> list[NotificationRef]:
        """The notifications the email carried; empty if it was settled already."""

    @abstractmethod
    async def mark_failed(
        self, email_id: str, at: dt.datetime, error: str, claim: str | None = None
    ) -> list[NotificationRef]:
        """Empty if settled already, or if ``claim`` is given and another sender holds the email."""

    @abstractmethod
    async def retry_later(self, email_id: str, error: str, delay_s: float, claim: str | None = None) -> None:
        """Nothing if settled, or if ``claim`` is given and another sender holds the email."""

    @abstractmethod
    async def publish(self, payload: Payload, *, id: str, cause: NotificationRef, at: dt.datetime) -> None: ...


class EmailQueue(ABC):
    @abstractmethod
    async def claim_due(self, limit: int, lease_s: float) -> list[QueuedEmail]:
        """Due pending emails, each with its attempt counted, leased for ``lease_s`` and
        carrying a fresh claim token."""

    @abstractmethod
    async def renew(self, email_id: str, claim: str, lease_s: float) -> bool:
        """Extend the lease just before handing the email to the server; False if the claim
        was lost (the lease ran out and another sender took it) or the email is settled."""

    @abstractmethod
    def settlement(self) -> AbstractAsyncContextManager[Settlement]: ...


@dataclass(frozen=True)
class WaitingItem:
    notification_id: str
    subject: str
    due_by: dt.date
    facts: tuple[tuple[str, str], ...]


class DigestTransaction(ABC):
    @abstractmethod
    async def waiting(self, recipient_id: int, window: DigestWindow) -> list[WaitingItem]:
        """Digest notifications in no digest yet (locked): recorded before ``window.cutoff``,
        or late ones recorded by ``window.late_until``."""

    @abstractmethod
    async def add_digest(self, email: OutgoingEmail, notification_ids: Sequence[str]) -> bool:
        """False if this recipient's digest for that day exists already."""


class DigestStore(ABC):
    @abstractmethod
    async def recipients_waiting(self, window: DigestWindow) -> list[Recipient]: ...

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[DigestTransaction]: ...


class Directory(ABC):
    """Recipients and subscriptions, as the CLI manages them."""

    @abstractmethod
    async def upsert_recipient(self, spec: RecipientSpec) -> tuple[Recipient, bool]:
        """The recipient, and True if it was new."""

    @abstractmethod
    async def find(self, email: str) -> Recipient | None: ...

    @abstractmethod
    async def recipients(self, organisation: str | None = None) -> list[Recipient]: ...

    @abstractmethod
    async def set_active(self, recipient_id: int, active: bool) -> None: ...

    @abstractmethod
    async def default_routes(self) -> list[DefaultRoute]: ...

    @abstractmethod
    async def subscribe(
        self, recipient_id: int, event_type: str, min_level: int, max_level: int | None, *, replace: bool
    ) -> bool:
        """Add a subscription (or, with ``replace``, change its levels); opt-outs are kept."""

    @abstractmethod
    async def subscriptions(self, recipient_id: int | None = None) -> list[tuple[Recipient, Subscription]]: ...

    @abstractmethod
    async def set_opted_out(self, recipient_id: int, event_type: str, at: dt.datetime | None) -> bool:
        """False if the recipient has no subscription to that event type."""


class MailError(Exception):
    """The SMTP server did not accept a message."""


class MailUnavailable(MailError):
    """The server cannot be reached or dropped the connection: nothing more can be sent now."""


class MailRejected(MailError):
    """The server refused this message."""


class MailConnection(ABC):
    @abstractmethod
    async def send(self, email: OutgoingEmail, date: dt.datetime) -> None:
        """Hand one email to the server; returns when the server has accepted it."""


class Mailer(ABC):
    @abstractmethod
    def connect(self) -> AbstractAsyncContextManager[MailConnection]:
        """A connection to the SMTP server; raises MailUnavailable when it cannot be had."""
