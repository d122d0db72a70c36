"""The read API's payloads: one pydantic model per resource, built from the register's
``Placement`` (``from_attributes``) and the read model's rows, so each field list is written
once. ``body`` turns a view into the JSON the API has always answered (ISO dates and times,
enums by value, fields in this order)."""

from __future__ import annotations

import datetime as dt
import json
from enum import Enum
from typing import Any, Self

from homeward.contracts import source_organisation
from homeward.contracts.vocab import (
    AgeBand,
    BedType,
    Cohort,
    EndReason,
    LegalStatus,
    OutOfAreaReason,
    Programme,
    ReviewOutcome,
    ReviewType,
    Setting,
)
from homeward.kit.parking import Parked
from pydantic import BaseModel, ConfigDict

from ..domain import Placement, RateEntry, ReviewSchedule


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class FundingView(View):
    commissioner: str
    share_bp: int


class PlacementView(View):
    """A placement as every list of placements shows it, as of a day."""

    placement_id: str
    referral_id: str | None
    patient_ref: str
    commissioner: str
    commissioner_area: str
    provider: str
    provider_site: str
    provider_site_area: str
    independent_provider: bool
    bed_type: BedType
    setting: Setting
    cohort: Cohort
    age_band: AgeBand
    legal_status: LegalStatus
    programme: Programme
    start_date: dt.date
    planned_end_date: dt.date | None
    end_date: dt.date | None
    end_reason: EndReason | None = None
    out_of_area: bool
    out_of_area_reason: OutOfAreaReason | None
    inappropriate: bool
    distance_from_home_km: int | None
    daily_rate_pence: int = 0
    funding: list[FundingView]
    # docs/authority.md: "awaiting commissioner agreement", "starting rate held for confirmation" or "agreed"
    status: str
    reported_by: str | None
    agreed_by: str | None
    held_rates: int = 0

    @classmethod
    def of(cls, p: Placement, day: dt.date, **more: Any) -> Self:
        """``p`` as of ``day``; ``more``: a subclass's own fields."""
        return cls.model_validate(
            {
                **PlacementView.model_validate(p).model_dump(),
                "end_reason": p.ending.end_reason if p.ending else None,
                "daily_rate_pence": p.rate_on(day),
                "held_rates": sum(1 for e in p.rates if e.held),
                **more,
            }
        )


class CandidateView(PlacementView):
    """An out-of-area placement whose home area has a bed of its type free."""

    local_area: str
    local_available_beds: int
    local_capacity_as_of: dt.datetime


class RateView(View):
    effective_date: dt.date
    daily_rate_pence: int
    reason: str
    stated_at: dt.datetime
    event_id: str
    in_force: bool
    held: bool
    stated_by: str | None
    confirmed_by: str | None

    @classmethod
    def of(cls, e: RateEntry, in_force: bool) -> Self:
        return cls(
            effective_date=e.effective_date,
            daily_rate_pence=e.daily_rate_pence,
            reason=e.reason,
            stated_at=e.event_time,
            event_id=e.event_id,
            in_force=in_force,
            held=e.held,
            stated_by=e.asserted_by,
            confirmed_by=e.confirmed_by,
        )


class ReviewDoneView(View):
    review_type: ReviewType
    review_date: dt.date
    outcome: ReviewOutcome
    next_review_due: dt.date | None


class ScheduleView(View):
    review_type: ReviewType
    interval_days: int
    due_date: dt.date
    last_review_date: dt.date | None
    policy: str

    @classmethod
    def of(cls, s: ReviewSchedule) -> Self:
        return cls(
            review_type=s.review_type,
            interval_days=s.rule.interval_days,
            due_date=s.due_date,
            last_review_date=s.last_review_date,
            policy=s.rule.source,
        )


class ParkedView(View):
    """An event that waited (or waits) for its placement in the kit's parking lot."""

    event_id: str
    placement_id: str
    event_type: str
    event_time: dt.datetime
    organisation: str | None
    reason: str
    parked_at: dt.datetime
    status: str
    data: Any

    @classmethod
    def of(cls, p: Parked, placement_id: str) -> Self:
        event = json.loads(p.raw)
        return cls(
            event_id=p.event_id,
            placement_id=placement_id,
            event_type=p.event_type,
            event_time=p.event_time,
            organisation=source_organisation(p.source),
            reason=p.reason,
            parked_at=p.parked_at,
            status=p.status,
            data=event.get("data"),
        )


class PlacementDetailView(PlacementView):
    """One placement with its history: rates, reviews, schedule, alerts, repatriations, and
    the events that waited for it."""

    as_of: dt.date
    active: bool
    transfer_to_placement_id: str | None
    rates: list[RateView]
    reviews: list[ReviewDoneView]
    schedule: list[ScheduleView]
    alerts: list[dict[str, Any]]
    repatriations: list[dict[str, Any]]
    parked_events: list[ParkedView]


class ReviewView(View):
    """A scheduled review of a placement."""

    placement_id: str
    patient_ref: str
    commissioner: str
    provider: str
    provider_site: str
    bed_type: BedType
    cohort: Cohort
    out_of_area: bool
    review_type: ReviewType
    due_date: dt.date
    last_review_date: dt.date | None

    @classmethod
    def of(cls, p: Placement, schedule: ReviewSchedule, **more: Any) -> Self:
        return cls.model_validate(
            {
                **{name: getattr(p, name) for name in ReviewView.model_fields if hasattr(p, name)},
                "review_type": schedule.review_type,
                "due_date": schedule.due_date,
                "last_review_date": schedule.last_review_date,
                **more,
            }
        )


class OverdueReviewView(ReviewView):
    days_overdue: int
    escalation_level: int


class UpcomingReviewView(ReviewView):
    days_until_due: int
