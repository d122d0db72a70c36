"""Test support for the notifications service: an in-memory store implementing every port, a
fake mailer, a real SMTP server (aiosmtpd) that keeps what it receives, and event builders.

Its name is unique across the repository because conftest.py puts this folder on sys.path."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import threading
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from homeward.contracts import Event, Payload, new_event, parse_json, service_source
from homeward.kit.clock import Clock
from homeward.notifications.adapters.templates import JinjaRenderer, build_message
from homeward.notifications.domain.digest import DigestWindow
from homeward.notifications.domain.model import Candidate, DefaultRoute, Recipient, Subscription
from homeward.notifications.domain.recipients import RecipientSpec
from homeward.notifications.ports import (
    AlertRepository,
    Config,
    DigestStore,
    DigestTransaction,
    Directory,
    EmailQueue,
    MailConnection,
    Mailer,
    MailRejected,
    MailUnavailable,
    NotificationRecord,
    NotificationRef,
    NotificationsUnitOfWork,
    OutgoingEmail,
    QueuedEmail,
    RecipientRepository,
    Renderer,
    Settlement,
    WaitingItem,
)
from homeward.testing import free_port

NHS = "9434765919"
PATIENT_REF = "pt_3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e"
UPSTREAM_PERSONAL = {
    "nhs_number": NHS,
    "patient_name": "Margaret Oyelaran-Whitfield",
    "name": "Margaret Oyelaran-Whitfield",
    "given_name": "Margaret",
    "family_name": "Oyelaran-Whitfield",
    "date_of_birth": "1961-07-14",
}
PERSONAL_STRINGS = (NHS, "943 476 5919", "Margaret", "Oyelaran", "Whitfield", "1961-07-14", PATIENT_REF)

SOURCES = {
    "ReviewOverdue": "placements",
    "ReviewDueSoon": "placements",
    "PlacementRegistered": "placements",
    "PatientRepatriated": "placements",
    "LocalCapacityUnavailable": "referrals",
    "ReferralWaitBreached": "referrals",
    "BudgetThresholdBreached": "budget",
    "InvoiceVarianceFound": "budget",
    "PlacementAwaitingAgreement": "placements",
    "AmountHeld": "budget",
}


def sample_data(name: str, commissioner: str = "05A", **extra: Any) -> dict[str, Any]:
    """A payload as upstream services write it, plus personal data they must never pass on."""
    base: dict[str, Any] = {
        "ReviewOverdue": {
            "placement_id": "PLC-05A-000123",
            "patient_ref": PATIENT_REF,
            "provider": "8HA03",
            "provider_site": "8HA0301",
            "bed_type": "picu",
            "cohort": "mental_health",
            "out_of_area": True,
            "review_type": "ctr",
            "due_date": "2026-02-19",
            "days_overdue": 21,
            "escalation_level": 1,
            "last_review_date": "2025-08-19",
        },
        "ReviewDueSoon": {
            "placement_id": "PLC-05A-000124",
            "patient_ref": PATIENT_REF,
            "provider": "8HA03",
            "provider_site": "8HA0301",
            "bed_type": "ld_autism_inpatient",
            "cohort": "learning_disability",
            "out_of_area": True,
            "review_type": "oversight_visit",
            "due_date": "2026-03-26",
            "days_until_due": 14,
        },
        "PlacementRegistered": {
            "placement_id": "PLC-05A-000125",
            "referral_id": "REF-05A-000077",
            "patient_ref": PATIENT_REF,
            "commissioner_area": commissioner,
            "provider": "8Z104",
            "provider_site": "8Z10401",
            "provider_site_area": "QHL",
            "independent_provider": True,
            "bed_type": "adult_acute",
            "setting": "inpatient",
            "cohort": "mental_health",
            "age_band": "adult",
            "legal_status": "mha_s3",
            "programme": "mental_health",
            "start_date": "2026-03-02",
            "daily_rate_pence": 54500,
            "out_of_area": True,
            "out_of_area_reason": "10",
            "inappropriate": True,
            "distance_from_home_km": 143,
            "funding": [{"commissioner": commissioner, "share_bp": 10000}],
        },
        "PatientRepatriated": {
            "patient_ref": PATIENT_REF,
            "programme": "mental_health",
            "from_placement_id": "PLC-05A-000125",
            "to_placement_id": "PLC-05A-000190",
            "from_site": "8Z10401",
            "to_site": "RYG01",
            "from_daily_rate_pence": 62000,
            "to_daily_rate_pence": 48050,
            "repatriated_on": "2026-03-09",
            "explicit": False,
        },
        "LocalCapacityUnavailable": {
            "referral_id": "REF-05A-000078",
            "placement_id": "PLC-05A-000126",
            "home_area": commissioner,
            "bed_type": "picu",
            "cohort": "mental_health",
            "placed_site": "8Z10401",
            "placed_on": "2026-03-10",
            "out_of_area_reason": "10",
            "waited_hours": 30,
        },
        "ReferralWaitBreached": {
            "referral_id": "REF-05A-000079",
            "patient_ref": PATIENT_REF,
            "bed_type": "adult_acute",
            "urgency": "urgent",
            "waiting_since": "2026-03-10T08:30:00+00:00",
            "threshold_hours": 24,
            "waited_hours": 30,
        },
        "BudgetThresholdBreached": {
            "financial_year": "2025-26",
            "programme": "mental_health",
            "threshold_percent": 95,
            "allocated_pence": 1_200_000_000,
            "forecast_outturn_pence": 1_234_567_891,
            "as_of": "2026-03-12",
        },
        "InvoiceVarianceFound": {
            "invoice_id": "INV-8Z104-5531",
            "placement_id": "PLC-05A-000125",
            "provider": "8Z104",
            "period_start": "2026-02-01",
            "period_end": "2026-02-28",
            "invoiced_pence": 1_736_000,
            "accrued_pence": 1_526_000,
            "variance_pence": 210_000,
            "tolerance_pence": 5_000,
        },
        "PlacementAwaitingAgreement": {
            "placement_id": "PLC-8Z104-000777",
            "provider": "8Z104",
            "provider_site": "8Z10401",
            "reported_by": "8Z104",
            "bed_type": "adult_acute",
            "start_date": "2026-03-02",
            "daily_rate_pence": 54_500,
            "out_of_area": True,
            "patient_ref": PATIENT_REF,
        },
        "AmountHeld": {
            "kind": "invoice",
            "placement_id": "PLC-05A-000125",
            "provider": "8Z104",
            "bed_type": "adult_acute",
            "asserted_by": "8Z104",
            "daily_rate_pence": 5_450_000,
            "lower_pence": 10_000,
            "upper_pence": 300_000,
            "invoice_id": "INV-8Z104-5532",
            "invoice_amount_pence": 152_600_000,
            "period_start": "2026-02-01",
            "period_end": "2026-02-28",
        },
    }[name]
    return {**base, "commissioner": commissioner, **UPSTREAM_PERSONAL, **extra}


def sample_event(name: str, commissioner: str = "05A", *, id: str | None = None, **extra: Any) -> Event[Payload]:
    """Parsed the way the consumer parses it: unknown (personal) fields are dropped by the contract."""
    raw = new_event(
        _model(name, sample_data(name, commissioner, **extra)),
        source=service_source(SOURCES[name]),
        id=id,
        time=dt.datetime(2026, 3, 12, 9, 0, tzinfo=dt.UTC),
    ).to_dict()
    raw["data"] = sample_data(name, commissioner, **extra)
    return parse_json(json.dumps(raw))


def _model(name: str, data: dict[str, Any]) -> Payload:
    from homeward.contracts import payload_class

    cls = payload_class(f"homeward.{name}.v1")
    assert cls is not None
    return cls.model_validate_json(json.dumps(data))


# ------------------------------------------------------------------------------ in-memory store


@dataclass
class StoredEmail:
    email: OutgoingEmail
    status: str = "pending"
    attempts: int = 0
    due: float = 0.0
    last_error: str | None = None
    requeued: int = 0
    claim: str = ""


@dataclass
class StoredNotification:
    record: NotificationRecord
    email_id: str | None
    message_id: str | None
    status: str = "pending"


@dataclass
class InMemoryStore(RecipientRepository, AlertRepository, EmailQueue, DigestStore, Directory):
    """Every port over plain lists; ``now`` is the store's own notion of time for leases."""

    recipients_: dict[int, Recipient] = field(default_factory=dict)
    subscriptions_: dict[tuple[int, str], Subscription] = field(default_factory=dict)
    routes: list[DefaultRoute] = field(default_factory=list)
    emails: dict[str, StoredEmail] = field(default_factory=dict)
    notifications: dict[str, StoredNotification] = field(default_factory=dict)
    published: list[tuple[str, Payload]] = field(default_factory=list)
    now: float = 0.0

    # Directory
    async def upsert_recipient(self, spec: RecipientSpec) -> tuple[Recipient, bool]:
        existing = next((r for r in self.recipients_.values() if r.email == spec.email), None)
        rid = existing.id if existing else len(self.recipients_) + 1
        r = Recipient(rid, spec.email, spec.organisation, spec.role, spec.display_name, spec.digest, True)
        self.recipients_[rid] = r
        return r, existing is None

    async def find(self, email_address: str) -> Recipient | None:
        return next((r for r in self.recipients_.values() if r.email == email_address), None)

    async def recipients(self, organisation: str | None = None) -> list[Recipient]:
        return [r for r in self.recipients_.values() if organisation in (None, r.organisation)]

    async def set_active(self, recipient_id: int, active: bool) -> None:
        self.recipients_[recipient_id] = replace(self.recipients_[recipient_id], active=active)

    async def default_routes(self) -> list[DefaultRoute]:
        return list(self.routes)

    async def subscribe(
        self, recipient_id: int, event_type: str, min_level: int, max_level: int | None, *, replace: bool
    ) -> bool:
        key = (recipient_id, event_type)
        old = self.subscriptions_.get(key)
        if old is not None and not replace:
            return False
        self.subscriptions_[key] = Subscription(
            recipient_id, event_type, min_level, max_level, old.opted_out_at if old else None
        )
        return True

    async def subscriptions(self, recipient_id: int | None = None) -> list[tuple[Recipient, Subscription]]:
        return [
            (self.recipients_[rid], s)
            for (rid, _), s in sorted(self.subscriptions_.items())
            if recipient_id in (None, rid)
        ]

    async def set_opted_out(self, recipient_id: int, event_type: str, at: dt.datetime | None) -> bool:
        key = (recipient_id, event_type)
        if key not in self.subscriptions_:
            return False
        self.subscriptions_[key] = replace(self.subscriptions_[key], opted_out_at=at)
        return True

    # RecipientRepository: hands back every subscription so the domain's routing does the choosing
    async def candidates(self, event_type: str, organisations: Collection[str]) -> list[Candidate]:
        return [Candidate(self.recipients_[rid], s) for (rid, _), s in self.subscriptions_.items()]

    async def record(self, notification: NotificationRecord, email_: OutgoingEmail | None) -> bool:
        if any(
            n.record.cause_event_id == notification.cause_event_id
            and n.record.recipient_id == notification.recipient_id
            for n in self.notifications.values()
        ):
            return False
        if email_ is not None:
            self.emails.setdefault(email_.id, StoredEmail(email_))
        self.notifications[notification.id] = StoredNotification(
            notification, notification.email_id, notification.message_id, notification.status
        )
        return True

    # EmailQueue
    async def claim_due(self, limit: int, lease_s: float) -> list[QueuedEmail]:
        due = [e for e in self.emails.values() if e.status == "pending" and e.due <= self.now][:limit]
        for e in due:
            e.attempts += 1
            e.due = self.now + lease_s
            e.claim = f"{e.email.id}/{e.attempts}"
        return [QueuedEmail(**vars(e.email), attempts=e.attempts, requeued=e.requeued, claim=e.claim) for e in due]

    async def renew(self, email_id: str, claim: str, lease_s: float) -> bool:
        e = self.emails[email_id]
        if e.claim != claim or e.status != "pending":
            return False
        e.due = self.now + lease_s
        return True

    def settlement(self) -> AbstractAsyncContextManager[Settlement]:
        return self._settlement()

    @asynccontextmanager
    async def _settlement(self) -> AsyncIterator[Settlement]:
        yield _FakeSettlement(self)

    def refs(self, email_id: str) -> list[NotificationRef]:
        return [
            NotificationRef(
                n.record.id,
                n.record.cause_event_id,
                n.record.cause_event_type,
                n.record.correlation_id,
                n.record.organisation,
                n.record.role,
                n.message_id or "",
            )
            for n in self.notifications.values()
            if n.email_id == email_id
        ]

    # DigestStore
    async def recipients_waiting(self, window: DigestWindow) -> list[Recipient]:
        ids = sorted({n.record.recipient_id for n in self._waiting(None, window)})
        return [self.recipients_[i] for i in ids if self.recipients_[i].active]

    def _waiting(self, recipient_id: int | None, window: DigestWindow) -> list[StoredNotification]:
        def in_window(r: NotificationRecord) -> bool:
            late = r.late and window.late_until is not None and r.recorded_at <= window.late_until
            return r.recorded_at < window.cutoff or late

        return [
            n
            for n in self.notifications.values()
            if n.record.digest
            and n.email_id is None
            and n.status == "pending"
            and in_window(n.record)
            and recipient_id in (None, n.record.recipient_id)
        ]

    def transaction(self) -> AbstractAsyncContextManager[DigestTransaction]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[DigestTransaction]:
        yield _FakeDigestTransaction(self)

    # helpers for assertions
    def statuses(self) -> dict[str, str]:
        return {n.record.email_address + "/" + n.record.event_name: n.status for n in self.notifications.values()}


class _FakeSettlement(Settlement):
    def __init__(self, store: InMemoryStore) -> None:
        self.store = store

    async def mark_sent(self, email_id: str, at: dt.datetime) -> list[NotificationRef]:
        return self._settle(email_id, "sent")

    async def mark_failed(
        self, email_id: str, at: dt.datetime, error: str, claim: str | None = None
    ) -> list[NotificationRef]:
        if claim is not None and self.store.emails[email_id].claim != claim:
            return []
        self.store.emails[email_id].last_error = error
        return self._settle(email_id, "failed")

    def _settle(self, email_id: str, status: str) -> list[NotificationRef]:
        e = self.store.emails[email_id]
        if e.status != "pending":
            return []
        e.status = status
        for n in self.store.notifications.values():
            if n.email_id == email_id:
                n.status = status
        return self.store.refs(email_id)

    async def retry_later(self, email_id: str, error: str, delay_s: float, claim: str | None = None) -> None:
        e = self.store.emails[email_id]
        if claim is not None and e.claim != claim:
            return
        e.last_error, e.due = error, self.store.now + delay_s

    async def publish(self, payload: Payload, *, id: str, cause: NotificationRef, at: dt.datetime) -> None:
        if all(existing != id for existing, _ in self.store.published):
            self.store.published.append((id, payload))


class _FakeDigestTransaction(DigestTransaction):
    def __init__(self, store: InMemoryStore) -> None:
        self.store = store

    async def waiting(self, recipient_id: int, window: DigestWindow) -> list[WaitingItem]:
        items = self.store._waiting(recipient_id, window)
        return [WaitingItem(n.record.id, n.record.subject, n.record.due_by, n.record.facts) for n in items]

    async def add_digest(self, email_: OutgoingEmail, notification_ids: Sequence[str]) -> bool:
        if email_.id in self.store.emails:
            return False
        self.store.emails[email_.id] = StoredEmail(email_)
        for nid in notification_ids:
            n = self.store.notifications[nid]
            n.email_id, n.message_id = email_.id, email_.message_id
        return True


@dataclass
class FakeMailer(Mailer):
    """Keeps the MIME messages it is given; can refuse, be down, or 'crash' after sending."""

    delivered: list[EmailMessage] = field(default_factory=list)
    down: bool = False
    refuse: Callable[[OutgoingEmail], bool] = lambda _: False
    crash_after_send: int = 0

    def connect(self) -> AbstractAsyncContextManager[MailConnection]:
        return self._connect()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[MailConnection]:
        if self.down:
            raise MailUnavailable("connection refused")
        yield _FakeConnection(self)


class _FakeConnection(MailConnection):
    def __init__(self, mailer: FakeMailer) -> None:
        self.mailer = mailer

    async def send(self, email_: OutgoingEmail, date: dt.datetime) -> None:
        if self.mailer.refuse(email_):
            raise MailRejected("550 mailbox unavailable")
        self.mailer.delivered.append(build_message(email_, mail_from="Homeward <alerts@homeward.invalid>", date=date))
        if self.mailer.crash_after_send:
            self.mailer.crash_after_send -= 1
            raise RuntimeError("process killed after the server accepted the message")


# ------------------------------------------------------------------------------ real SMTP server


class _KeepMessages:
    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.raw.append(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on a free local port, which can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handler = _KeepMessages()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[EmailMessage]:
        with self.handler._lock:
            raw = list(self.handler.raw)
        return [email.message_from_bytes(r, policy=email.policy.default) for r in raw]  # type: ignore[misc]


class FakeUnitOfWork(NotificationsUnitOfWork):
    """The handlers' unit of work over the in-memory store: no database, no outbox."""

    def __init__(
        self, store: InMemoryStore, clock: Clock, *, config: Config | None = None, renderer: Renderer | None = None
    ) -> None:
        super().__init__(None, "notifications", clock)  # type: ignore[arg-type]
        self.recipients = store
        self.alerts = store
        self.renderer = renderer or JinjaRenderer()
        self.config = config or Config()
