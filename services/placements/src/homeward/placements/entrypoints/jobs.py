"""Schedulers that run inside the service, as of the injectable clock.

``reviews``: ``ReviewDueSoon`` once per (placement, review type, due date) when the due date
is near; ``ReviewOverdue`` once per missed due date, and once more at each escalation level.
Each alert has a deterministic id and a row in ``review_alerts`` written in the same
transaction as its outbox row, so a restart or a second replica says nothing twice.

Events parked for a placement that never came are the kit's (``parking-expiry``).
"""

from __future__ import annotations

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
                    alert_payload(item, alert), id=event_id
                )
                emitted += 1
        if emitted:
            log.info("review alerts queued", emitted=emitted, as_of=today.isoformat())
        return emitted


def jobs(topics: Topics) -> list[Job]:
    return [Job("reviews", ReviewScheduler(topics).run)]
