"""Use case: an alert-worthy event arrives; record one notification per recipient.

The handler only records. It runs in the consuming transaction, so the notification rows
commit together with the inbox entry: a redelivered event finds its inbox entry and records
nothing, and (event, recipient) is unique besides. The sender job sends what was recorded.
"""

from __future__ import annotations

from typing import Any

from homeward.contracts import Event
from homeward.kit.logging import get_logger
from homeward.kit.uow import handler_table

from .domain.alerts import HANDLED, Alert, alert_from
from .domain.formatting import uk_date
from .domain.model import Recipient, message_id, notification_id, route
from .domain.timeliness import Judgement
from .ports import NotificationRecord, NotificationsUnitOfWork, OutgoingEmail, RenderedEmail

log = get_logger(__name__)


async def record_alert(event: Event[Any], uow: NotificationsUnitOfWork) -> None:
    alert = alert_from(event, uow.config.policy)
    if alert is None:
        return
    recipients = route(alert, await uow.recipients.candidates(alert.name, alert.organisations))
    if not recipients:
        log.debug("alert has no recipients", alert=alert.name, reference=alert.reference)
        return
    # Judged against the service clock's today, not the event's time (see domain/timeliness).
    judgement = uow.config.timeliness.judge(alert.due_by, uk_date(uow.clock.now()))
    rendered: RenderedEmail | None = None
    recorded = 0
    for r in recipients:
        by_email = judgement.kind == "current" and not r.digest
        if by_email and rendered is None:
            rendered = uow.renderer.alert(alert)
        if await uow.alerts.record(*_notification(alert, r, rendered if by_email else None, judgement, uow)):
            recorded += 1
    log.debug(
        "alert suppressed: about history" if judgement.kind == "history" else "alert recorded",
        alert=alert.name,
        reference=alert.reference,
        recipients=recorded,
        timeliness=judgement.kind,
    )


def _notification(
    alert: Alert, r: Recipient, rendered: RenderedEmail | None, judgement: Judgement, uow: NotificationsUnitOfWork
) -> tuple[NotificationRecord, OutgoingEmail | None]:
    now = uow.clock.now()
    nid = notification_id(alert.event_id, r.id)
    email = None
    if rendered is not None:
        email = OutgoingEmail(
            id=nid,
            message_id=message_id(nid),
            kind="alert",
            recipient_id=r.id,
            to_address=r.email,
            to_name=r.display_name,
            subject=rendered.subject,
            body_text=rendered.text,
            body_html=rendered.html,
            created_at=now,
        )
    record = NotificationRecord(
        id=nid,
        cause_event_id=alert.event_id,
        cause_event_type=alert.event_type,
        event_name=alert.name,
        correlation_id=alert.correlation_id,
        occurred_at=alert.occurred_at,
        recipient_id=r.id,
        email_address=r.email,
        organisation=r.organisation,
        role=r.role,
        reference=alert.reference,
        escalation_level=alert.escalation_level,
        subject=alert.subject,
        due_by=alert.due_by,
        facts=alert.facts,
        digest=judgement.kind == "late" or (judgement.kind == "current" and r.digest),
        email_id=email.id if email else None,
        message_id=email.message_id if email else None,
        recorded_at=now,
        status="suppressed" if judgement.kind == "history" else "pending",
        late=judgement.kind == "late",
        suppressed_reason=judgement.reason if judgement.kind == "history" else None,
    )
    return record, email


# Every alert-worthy event is recorded the same way; domain/alerts says what each one means.
HANDLERS = handler_table(dict.fromkeys(HANDLED, record_alert))
