"""Use cases run by the scheduled jobs: send what is due, and make the daily digests.

Sending: claim due emails (each claim counts an attempt, leases the row and gives it a fresh
claim token), renew the lease under that token just before handing each email to the SMTP
server (an email whose lease ran out and was claimed by another sender is skipped, not sent
twice), then settle it in one transaction with the events it causes: sent and
``NotificationSent``; or a retry after exponential backoff; or, after the last attempt,
failed and ``NotificationFailed``, the row kept for a person to see. Once the server has
accepted a message, its "sent" settlement is retried for up to ``settle_retry_s`` (within
the lease), so a database error or outage at that moment does not send it again. Only a
crash, or a database away for longer than that, between the server's acceptance and the
commit leaves the row pending with its attempt counted; when the lease runs out it is sent
again with the same Message-ID (docs/operations.md, "Email delivery").
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from homeward.contracts.events import NotificationFailed, NotificationSent
from homeward.kit.clock import Clock
from homeward.kit.consumer import stable_id
from homeward.kit.logging import get_logger, redact_text
from prometheus_client import Counter

from .domain.digest import DigestItem, current_window
from .domain.model import digest_id, message_id, retry_delay_s
from .ports import (
    DigestStore,
    EmailQueue,
    Mailer,
    MailError,
    MailUnavailable,
    NotificationRef,
    OutgoingEmail,
    QueuedEmail,
    Renderer,
)

log = get_logger(__name__)

EMAILS = Counter("homeward_notifications_emails_total", "Emails handed to the SMTP server, by outcome", ["outcome"])


@dataclass(frozen=True)
class SendPolicy:
    max_attempts: int = 8
    backoff_base_s: float = 60.0
    backoff_max_s: float = 3600.0
    lease_s: float = 300.0
    batch_size: int = 50
    settle_retry_s: float = 120.0  # at most half the lease is used

    @property
    def settle_budget_s(self) -> float:
        return min(self.settle_retry_s, self.lease_s / 2)


class Sender:
    def __init__(self, queue: EmailQueue, mailer: Mailer, policy: SendPolicy | None = None) -> None:
        self.queue = queue
        self.mailer = mailer
        self.policy = policy or SendPolicy()

    async def send_due(self, clock: Clock) -> int:
        """Send every due email; returns how many the server accepted."""
        total = 0
        while True:
            claimed = await self.queue.claim_due(self.policy.batch_size, self.policy.lease_s)
            if not claimed:
                return total
            sent, server_down = await self._send(sorted(claimed, key=lambda e: (e.created_at, e.id)), clock)
            total += sent
            if server_down or len(claimed) < self.policy.batch_size:
                return total

    async def _send(self, claimed: Sequence[QueuedEmail], clock: Clock) -> tuple[int, bool]:
        ready: list[QueuedEmail] = []
        for email in claimed:
            if email.attempts > self.policy.max_attempts:
                # Earlier attempts ended without a settlement (crashes): stop here, visibly.
                await self._failed(email, f"no confirmation after {email.attempts - 1} attempts", clock, final=True)
            else:
                ready.append(email)
        if not ready:
            return 0, False
        sent = 0
        connected = False
        try:
            async with self.mailer.connect() as connection:
                connected = True
                for i, email in enumerate(ready):
                    if not await self.queue.renew(email.id, email.claim, self.policy.lease_s):
                        log.warning("email claimed by another sender or settled; not sent", email_id=email.id)
                        continue
                    try:
                        await connection.send(email, clock.now())
                    except MailUnavailable as exc:
                        for unsent in ready[i:]:
                            await self._failed(unsent, _describe(exc), clock)
                        return sent, True
                    except MailError as exc:
                        await self._failed(email, _describe(exc), clock)
                        continue
                    await self._sent(email, clock)
                    sent += 1
        except MailUnavailable as exc:
            if connected:
                raise
            for email in ready:
                await self._failed(email, _describe(exc), clock)
            return 0, True
        return sent, False

    async def _sent(self, email: QueuedEmail, clock: Clock) -> None:
        """Settle an email the server accepted. The settlement is idempotent (a second
        mark finds the row settled and publishes nothing), so it is retried with backoff for
        up to ``settle_budget_s`` whatever failed, a lost commit acknowledgement included."""
        now = clock.now()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.settle_budget_s
        delay = 0.05
        while True:
            try:
                refs = await self._settle_sent(email, now)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if loop.time() + delay > deadline:
                    log.error(
                        "email accepted by the server but not recorded as sent; it will be sent again "
                        "with the same Message-ID when its lease ends",
                        email_id=email.id,
                        error=_describe(exc),
                    )
                    raise
                log.warning("recording a sent email failed; retrying", email_id=email.id, error=_describe(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        EMAILS.labels("sent").inc()
        log.info("email sent", email_id=email.id, kind=email.kind, attempts=email.attempts, notifications=len(refs))

    async def _settle_sent(self, email: QueuedEmail, now: dt.datetime) -> list[NotificationRef]:
        async with self.queue.settlement() as s:
            refs = await s.mark_sent(email.id, now)
            for ref in refs:
                payload = NotificationSent(
                    notification_id=ref.id,
                    cause_event_id=ref.cause_event_id,
                    cause_event_type=ref.cause_event_type,
                    organisation=ref.organisation,
                    role=ref.role,
                    message_id=ref.message_id,
                    sent_at=now,
                )
                await s.publish(payload, id=stable_id("NotificationSent", ref.id), cause=ref, at=now)
        return refs

    async def _failed(self, email: QueuedEmail, error: str, clock: Clock, *, final: bool = False) -> None:
        if not final and email.attempts < self.policy.max_attempts:
            delay = retry_delay_s(email.attempts, self.policy.backoff_base_s, self.policy.backoff_max_s)
            async with self.queue.settlement() as s:
                await s.retry_later(email.id, error, delay, email.claim or None)
            EMAILS.labels("retry").inc()
            log.warning(
                "email not sent; will retry", email_id=email.id, attempts=email.attempts, retry_in_s=delay, error=error
            )
            return
        now = clock.now()
        async with self.queue.settlement() as s:
            refs = await s.mark_failed(email.id, now, error, email.claim or None)
            for ref in refs:
                payload = NotificationFailed(
                    notification_id=ref.id,
                    cause_event_id=ref.cause_event_id,
                    cause_event_type=ref.cause_event_type,
                    organisation=ref.organisation,
                    role=ref.role,
                    attempts=max(1, email.attempts),
                    last_error=error,
                )
                await s.publish(payload, id=stable_id("NotificationFailed", ref.id, email.requeued), cause=ref, at=now)
        EMAILS.labels("failed").inc()
        log.error("email failed; kept for a person to see", email_id=email.id, attempts=email.attempts, error=error)


def _describe(exc: BaseException) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:500]


class DigestMaker:
    """Once a day (at ``hour`` UK time) gather each digest recipient's waiting alerts into one email."""

    def __init__(self, store: DigestStore, renderer: Renderer, hour: int) -> None:
        self.store = store
        self.renderer = renderer
        self.hour = hour

    async def make_due(self, clock: Clock) -> int:
        window = current_window(clock.now(), self.hour)
        made = 0
        for recipient in await self.store.recipients_waiting(window):
            async with self.store.transaction() as tx:
                items = await tx.waiting(recipient.id, window)
                if not items:
                    continue
                rendered = self.renderer.digest(window.date, [DigestItem(i.subject, i.due_by, i.facts) for i in items])
                eid = digest_id(recipient.id, window.date)
                email = OutgoingEmail(
                    id=eid,
                    message_id=message_id(eid),
                    kind="digest",
                    recipient_id=recipient.id,
                    to_address=recipient.email,
                    to_name=recipient.display_name,
                    subject=rendered.subject,
                    body_text=rendered.text,
                    body_html=rendered.html,
                    created_at=clock.now(),
                    digest_date=window.date,
                )
                if await tx.add_digest(email, [i.notification_id for i in items]):
                    made += 1
                    log.info("digest made", recipient_id=recipient.id, date=window.date.isoformat(), alerts=len(items))
        return made
