"""What the review scheduler reads and the record of what it has already said."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
from homeward.contracts.vocab import BedType, Cohort, ReviewType

from ..domain import Alert, ReviewRule, ReviewSchedule

Conn: TypeAlias = asyncpg.Connection  # type: ignore[type-arg]


@dataclass(frozen=True)
class ScheduledReview:
    placement_id: str
    patient_ref: str
    commissioner: str
    provider: str
    provider_site: str
    bed_type: BedType
    cohort: Cohort
    out_of_area: bool
    end_date: dt.date | None
    schedule: ReviewSchedule


async def reviews_to_consider(conn: Conn, today: dt.date) -> list[ScheduledReview]:
    """Scheduled reviews due soon or already due as of ``today``, of placements not ended by
    ``today`` (due dates before a known end only): a discharged person is not chased."""
    rows = await conn.fetch(
        """SELECT s.*, p.patient_ref, p.commissioner, p.provider, p.provider_site, p.bed_type, p.cohort,
                  p.out_of_area, p.end_date
           FROM review_schedules s JOIN placements p USING (placement_id)
           WHERE s.due_date - s.due_soon_days <= $1
             AND (p.end_date IS NULL OR (s.due_date < p.end_date AND p.end_date > $1))
           ORDER BY s.placement_id, s.review_type""",
        today,
    )
    return [
        ScheduledReview(
            placement_id=r["placement_id"],
            patient_ref=r["patient_ref"],
            commissioner=r["commissioner"],
            provider=r["provider"],
            provider_site=r["provider_site"],
            bed_type=BedType(r["bed_type"]),
            cohort=Cohort(r["cohort"]),
            out_of_area=r["out_of_area"],
            end_date=r["end_date"],
            schedule=ReviewSchedule(
                ReviewRule(
                    ReviewType(r["review_type"]),
                    r["interval_days"],
                    r["due_soon_days"],
                    r["escalate_after_days"],
                    r["policy_source"],
                ),
                r["due_date"],
                r["last_review_date"],
            ),
        )
        for r in rows
    ]


async def claim_alert(conn: Conn, item: ScheduledReview, alert: Alert, event_id: str, at: dt.datetime) -> bool:
    """Record that ``alert`` is being said; False if it (or, when overdue, a higher level) was said before.

    A second replica running at the same moment blocks on the primary key until the first
    commits, then inserts nothing.
    """
    inserted = await conn.fetchval(
        """INSERT INTO review_alerts (placement_id, review_type, due_date, kind, level, event_id, emitted_at)
           SELECT $1, $2, $3, $4, $5, $6, $7
           WHERE NOT EXISTS (
               SELECT 1 FROM review_alerts a
               WHERE a.placement_id = $1 AND a.review_type = $2 AND a.due_date = $3 AND a.kind = $4
                 AND a.level >= $5)
           ON CONFLICT DO NOTHING RETURNING 1""",
        item.placement_id,
        alert.review_type.value,
        alert.due_date,
        alert.kind,
        alert.level,
        event_id,
        at,
    )
    return inserted is not None
