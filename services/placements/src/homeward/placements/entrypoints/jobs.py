"""Schedulers that run inside the service, as of the injectable clock.

``reviews``: ``ReviewDueSoon`` once per (placement, review type, due date) when the due date
is near; ``ReviewOverdue`` once per missed due date, and once more at each escalation level.
Each alert has a deterministic id and a row in ``review_alerts`` written in the same
transaction as its outbox row, so a restart or a second replica says nothing twice. Its time is
the business time of the fact (``alert_time``), not the moment the scheduler ran.

Events parked for a placement that never came are the kit's (``parking-expiry``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from homeward.contracts.events import Payload, ReviewDueSoon, ReviewOverdue
from homeward.kit.clock import Clock
from homeward.kit.consumer import UnitOfWork, stable_id
from homeward.kit.logging import get_logger
from homeward.kit.service import Job
from homeward.kit.topics import Topics

from ..adapters.alerts import ScheduledReview, claim_alert, reviews_to_consider
from ..domain import Alert, alert_for

SERVICE = "placements"

log = get_logger(__name__)


def alert_event_id(item: ScheduledReview, alert: Alert) -> str:
    if alert.kind == "due_soon":
        return stable_id("ReviewDueSoon", item.placement_id, alert.review_type.value, alert.due_date)
    return stable_id("ReviewOverdue", item.placement_id, alert.review_type.value, alert.due_date, alert.level)


def alert_time(item: ScheduledReview, alert: Alert) -> dt.datetime:
    """When the fact an alert states happened, for its CloudEvents ``time`` (issue 14): the
    start (00:00 UTC, as ``fact_time``) of the day the review came within its due-soon window
    (the due date less ``due_soon_days``), or of the day it reached the alert's overdue level
    (level 1 the day after the due date, each further level ``escalate_after_days`` later: the
    inverse of ``overdue_level``). Never the day the scheduler ran, so a scheduler that was
    down for a while, or a history backfilled late, dates an alert as one running every day
    would; the id, from the same facts, is the same either way."""
    rule = item.schedule.rule
    if alert.kind == "due_soon":
        day = alert.due_date - dt.timedelta(days=rule.due_soon_days)
    else:
        day = alert.due_date + dt.timedelta(days=1 + (alert.level - 1) * rule.escalate_after_days)
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def alert_payload(item: ScheduledReview, alert: Alert) -> Payload:
    common: dict[str, Any] = {
        "placement_id": item.placement_id,
        "patient_ref": item.patient_ref,
        "commissioner": item.commissioner,
        "provider": item.provider,
        "provider_site": item.provider_site,
        "bed_type": item.bed_type,
        "cohort": item.cohort,
        "out_of_area": item.out_of_area,
        "review_type": alert.review_type,
        "due_date": alert.due_date,
    }
    if alert.kind == "due_soon":
        return ReviewDueSoon(**common, days_until_due=alert.days)
    return ReviewOverdue(
        **common,
        days_overdue=alert.days,
        escalation_level=alert.level,
        last_review_date=item.schedule.last_review_date,
    )


class ReviewScheduler:
    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    async def run(self, pool: asyncpg.Pool, clock: Clock) -> int:  # type: ignore[type-arg]
        today = clock.today()
        emitted = 0
        async with pool.acquire() as conn, conn.transaction():
            for item in await reviews_to_consider(conn, today):
                alert = alert_for(item.schedule, today=today, end_date=item.end_date)
                if alert is None:
                    continue
                event_id = alert_event_id(item, alert)
                if not await claim_alert(conn, item, alert, event_id, clock.now()):
                    continue
                await UnitOfWork(conn, SERVICE, clock, topics=self.topics).publish(
                    alert_payload(item, alert), id=event_id, time=alert_time(item, alert)
                )
                emitted += 1
        if emitted:
            log.info("review alerts queued", emitted=emitted, as_of=today.isoformat())
        return emitted


def jobs(topics: Topics) -> list[Job]:
    return [Job("reviews", ReviewScheduler(topics).run)]
