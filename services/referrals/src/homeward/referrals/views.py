"""One pydantic model per resource the service shows or stores as JSON: the API payloads and a
referral's stored local options derive from these, built from the domain's dataclasses
(``from_attributes``), so each field list is written once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from homeward.contracts.vocab import AgeBand, BedType, Cohort, OutOfAreaReason, Urgency, WithdrawalReason
from pydantic import BaseModel, ConfigDict, PlainSerializer

from .domain.model import BedCount, Referral
from .domain.rules import area_total, breached_thresholds, next_threshold

# Instants as Python writes them (``+00:00``), as the API always has; pydantic would write ``Z``.
Instant = Annotated[dt.datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str)]


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    def json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class BedCountView(View):
    """A site's count, as a referral's local option (shown, and stored with the referral)."""

    site: str
    provider: str
    area: str
    bed_type: BedType
    available_beds: int
    total_beds: int | None = None
    as_of: Instant

    def to_count(self) -> BedCount:
        return BedCount(**dict(self))


class SiteCountView(View):
    site: str
    provider: str
    available_beds: int
    total_beds: int | None
    as_of: Instant


class AreaCapacityView(View):
    """An area's free beds of one type, summed over its sites, and each site's count."""

    area: str
    bed_type: BedType
    available_beds: int
    as_of: Instant
    sites: list[SiteCountView]

    @classmethod
    def of_counts(cls, counts: Sequence[BedCount]) -> list[AreaCapacityView]:
        groups: dict[tuple[str, str], list[BedCount]] = {}
        for c in counts:
            groups.setdefault((c.area, c.bed_type.value), []).append(c)
        return [
            cls(
                area=area,
                bed_type=BedType(bed_type),
                available_beds=area_total(sites),
                as_of=max(s.as_of for s in sites),
                sites=[SiteCountView.model_validate(s) for s in sorted(sites, key=lambda s: s.site)],
            )
            for (area, bed_type), sites in sorted(groups.items())
        ]


class WithdrawalView(View):
    withdrawn_at: Instant
    reason: WithdrawalReason


class PlacementView(View):
    placement_id: str
    provider: str
    site: str
    site_area: str
    start_date: dt.date
    out_of_area: bool
    out_of_area_reason: OutOfAreaReason | None


class ReferralView(View):
    """A referral as it stood at an instant: its wait then, the thresholds it had reached, and
    the local options it was triaged with."""

    referral_id: str
    patient_ref: str
    commissioner: str
    home_area: str
    bed_type: BedType
    cohort: Cohort
    age_band: AgeBand
    urgency: Urgency
    need_arose_at: Instant
    received_at: Instant
    open: bool
    waited_hours: int | None
    breached_thresholds: list[int]
    next_threshold_hours: int | None
    local_options_at_triage: list[BedCountView]
    triaged_as_of: Instant | None
    withdrawal: WithdrawalView | None
    placement: PlacementView | None

    @classmethod
    def at(cls, referral: Referral, at: dt.datetime, thresholds: Mapping[Urgency, Sequence[int]]) -> ReferralView:
        limits = thresholds.get(referral.urgency, ())
        waiting = referral.open_at(at)
        shown: dict[str, Any] = {
            "open": waiting,
            "waited_hours": referral.wait_hours(at) if waiting else referral.waited_hours,
            "breached_thresholds": breached_thresholds(referral.need_arose_at, limits, at) if waiting else [],
            "next_threshold_hours": next_threshold(referral.need_arose_at, limits, at) if waiting else None,
            "local_options_at_triage": [BedCountView.model_validate(o) for o in referral.local_options],
            "withdrawal": WithdrawalView.model_validate(referral.withdrawal) if referral.withdrawal else None,
            "placement": PlacementView.model_validate(referral.placement) if referral.placement else None,
        }
        stored = {name: getattr(referral, name) for name in cls.model_fields if name not in shown}
        return cls.model_validate({**stored, **shown})
