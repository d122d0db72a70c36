"""The placement register's aggregate: one placement, its rate schedule, reviews and end.

Pure: no I/O. Methods check a fact against what is known and either return what changed
or raise ``Refused`` with a reason that goes back to the partner.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from homeward.contracts.events import FundingShare, PlacementAwaitingAgreement, PlacementMade, PlacementRegistered
from homeward.contracts.vocab import (
    AgeBand,
    BedType,
    Cohort,
    EndReason,
    LegalStatus,
    OutOfAreaReason,
    Programme,
    RateChangeReason,
    ReviewType,
    Setting,
    setting_of,
)
from homeward.kit.aggregate import Aggregate
from homeward.kit.identity import stable_id

from .areas import is_out_of_area
from .reviews import Alert, Review, ReviewPolicy, ReviewSchedule, alert_for, next_due

FULL_SHARE_BP = 10_000

AWAITING_AGREEMENT = "awaiting commissioner agreement"
RATE_HELD = "starting rate held for confirmation"
AGREED = "agreed"


class Refused(Exception):
    """A fact the register will not accept; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class RateEntry:
    effective_date: dt.date
    daily_rate_pence: int
    reason: str
    event_id: str
    event_time: dt.datetime
    # Outside the bed type's plausibility bounds and not yet confirmed: kept in the history, not in force.
    held: bool = False
    asserted_by: str | None = None  # the organisation that stated it
    confirmed_by: str | None = None  # the commissioner that confirmed it, if it was held

    @property
    def order(self) -> tuple[dt.date, dt.datetime, str]:
        # Two statements for the same date: the one made later (event time) wins.
        return (self.effective_date, self.event_time, self.event_id)


def fact_time(stated_at: dt.datetime, day: dt.date) -> dt.datetime:
    """When a fact about a day happened, for the time of the event that publishes it: the start
    (00:00 UTC) of that day, or the time the partner stated it if that came first (a placement
    made ahead of its start). Never the time Homeward processed it: a history sent late, or
    replayed, keeps the times it had (issue 14)."""
    return min(stated_at, dt.datetime.combine(day, dt.time(), dt.UTC))


def rate_on(entries: list[RateEntry], day: dt.date) -> int | None:
    """The rate in force on ``day``: held statements are not in force until confirmed."""
    applicable = [e for e in entries if e.effective_date <= day and not e.held]
    if not applicable:
        return None
    return max(applicable, key=lambda e: e.order).daily_rate_pence


@dataclass(frozen=True)
class RateChange:
    outcome: Literal["applied", "duplicate", "superseded", "held"]
    entry: RateEntry
    previous_daily_rate_pence: int


@dataclass(frozen=True)
class Ending:
    end_date: dt.date
    end_reason: EndReason
    transfer_to_placement_id: str | None
    event_id: str


@dataclass
class Placement(Aggregate):
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
    cohort: Cohort
    age_band: AgeBand
    legal_status: LegalStatus
    programme: Programme
    start_date: dt.date
    planned_end_date: dt.date | None
    initial_daily_rate_pence: int
    out_of_area_reason: OutOfAreaReason | None
    distance_from_home_km: int | None
    funding: tuple[FundingShare, ...]
    prior_approval_reference: str | None
    registered_event_id: str
    registered_at: dt.datetime
    rates: list[RateEntry] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    schedules: dict[ReviewType, ReviewSchedule] = field(default_factory=dict)
    ending: Ending | None = None
    # Authority (docs/authority.md): who reported it, which commissioner agreed it (None: awaiting
    # agreement), and whether PlacementRegistered has gone to the budget.
    reported_by: str | None = None
    agreed_by: str | None = None
    agreed_event_id: str | None = None
    released: bool = False

    # ------------------------------------------------------------------ derived facts

    @property
    def setting(self) -> Setting:
        return setting_of(self.bed_type)

    @property
    def out_of_area(self) -> bool:
        return is_out_of_area(self.commissioner_area, self.provider_site_area)

    @property
    def inappropriate(self) -> bool:
        """Out of area for lack of a local bed (NHS ReasonOAT 10)."""
        return self.out_of_area and self.out_of_area_reason is OutOfAreaReason.NO_LOCAL_BED

    @property
    def end_date(self) -> dt.date | None:
        return self.ending.end_date if self.ending else None

    @property
    def starting_rate_held(self) -> bool:
        """No rate in force from the start: the stated one is held, and neither confirmed nor
        replaced by a plausible statement effective from the start."""
        return not any(e.effective_date <= self.start_date and not e.held for e in self.rates)

    @property
    def chargeable(self) -> bool:
        """Agreed by its commissioner, at a starting rate that is plausible or confirmed."""
        return self.agreed_by is not None and not self.starting_rate_held

    @property
    def status(self) -> str:
        if self.agreed_by is None:
            return AWAITING_AGREEMENT
        if self.starting_rate_held:
            return RATE_HELD
        return AGREED

    def agree(self, organisation: str, event_id: str, commissioner: str, daily_rate_pence: int) -> bool:
        """The commissioner agrees the placement as reported; False if it was already agreed.

        The caller has checked that ``organisation`` may act for the commissioner."""
        if commissioner != self.commissioner:
            raise Refused(
                "conflict",
                f"placement {self.placement_id} was reported for commissioner {self.commissioner}, not {commissioner}",
            )
        if daily_rate_pence != self.initial_daily_rate_pence:
            raise Refused(
                "conflict",
                f"placement {self.placement_id} was reported at another starting daily rate; agree the reported "
                "rate, or have the provider correct it with a PlacementRateChanged",
            )
        if self.agreed_by is not None:
            return False
        self.agreed_by, self.agreed_event_id = organisation, event_id
        return True

    def confirm_rate(self, effective_date: dt.date, daily_rate_pence: int, organisation: str) -> RateChange | None:
        """Confirm a held rate statement; None when that statement is already in force (nothing held)."""
        held = [
            e
            for e in self.rates
            if e.effective_date == effective_date and e.daily_rate_pence == daily_rate_pence and e.held
        ]
        if not held:
            if any(e.effective_date == effective_date and e.daily_rate_pence == daily_rate_pence for e in self.rates):
                return None
            raise Refused(
                "nothing-held",
                f"no rate of {daily_rate_pence}p from {effective_date} is held for placement {self.placement_id}",
            )
        entry = held[-1]
        previous = self.rate_on(effective_date)
        confirmed = replace(entry, held=False, confirmed_by=organisation)
        self.rates[self.rates.index(entry)] = confirmed
        same_day = [e for e in self.rates if e.effective_date == effective_date and not e.held and e is not confirmed]
        if any(e.order > confirmed.order for e in same_day):
            return RateChange("superseded", confirmed, previous)
        return RateChange("applied", confirmed, previous)

    def parties(self) -> set[str]:
        """The organisations that may speak for this placement."""
        return {self.commissioner, self.provider, *(f.commissioner for f in self.funding)}

    def active_on(self, day: dt.date) -> bool:
        """Placed on ``day``: started, and not yet ended (the end date is the day of leaving)."""
        return self.start_date <= day and (self.end_date is None or day < self.end_date)

    def rate_on(self, day: dt.date) -> int:
        rate = rate_on(self.rates, max(day, self.start_date))
        return self.initial_daily_rate_pence if rate is None else rate

    def last_night(self) -> dt.date:
        """The last night of the stay: the night before the end date (the start for a same-day stay)."""
        if self.end_date is None:
            raise ValueError("the placement has not ended")
        return max(self.start_date, self.end_date - dt.timedelta(days=1))

    def schedules_as_of(self, day: dt.date) -> list[ReviewSchedule]:
        """Each scheduled review's due date as it stood on ``day``: only reviews held by then count."""
        held = [r for r in self.reviews if r.review_date <= day]
        return [next_due(self.start_date, s.rule, held) for s in self.schedules.values()]

    def alerts_as_of(self, day: dt.date) -> list[Alert]:
        found = (alert_for(s, today=day, end_date=self.end_date) for s in self.schedules_as_of(day))
        return [a for a in found if a is not None]

    def facts(self) -> dict[str, Any]:
        """What a PlacementMade states, normalised: two statements with equal facts are the same placement."""
        return {
            "referral_id": self.referral_id,
            "patient_ref": self.patient_ref,
            "commissioner": self.commissioner,
            "commissioner_area": self.commissioner_area,
            "provider": self.provider,
            "provider_site": self.provider_site,
            "provider_site_area": self.provider_site_area,
            "independent_provider": self.independent_provider,
            "bed_type": self.bed_type,
            "cohort": self.cohort,
            "age_band": self.age_band,
            "legal_status": self.legal_status,
            "programme": self.programme,
            "start_date": self.start_date,
            "planned_end_date": self.planned_end_date,
            "daily_rate_pence": self.initial_daily_rate_pence,
            "out_of_area_reason": self.out_of_area_reason,
            "distance_from_home_km": self.distance_from_home_km,
            "funding": sorted((f.commissioner, f.share_bp) for f in self.funding),
            "prior_approval_reference": self.prior_approval_reference,
        }

    def differences(self, other: Placement) -> list[str]:
        mine, theirs = self.facts(), other.facts()
        return sorted(k for k in mine if mine[k] != theirs[k])

    def registered_payload(self, asserted_by: str | None = None, principal: str | None = None) -> PlacementRegistered:
        return PlacementRegistered(
            asserted_by=asserted_by,
            principal=principal,
            placement_id=self.placement_id,
            referral_id=self.referral_id,
            patient_ref=self.patient_ref,
            commissioner=self.commissioner,
            commissioner_area=self.commissioner_area,
            provider=self.provider,
            provider_site=self.provider_site,
            provider_site_area=self.provider_site_area,
            independent_provider=self.independent_provider,
            bed_type=self.bed_type,
            setting=self.setting,
            cohort=self.cohort,
            age_band=self.age_band,
            legal_status=self.legal_status,
            programme=self.programme,
            start_date=self.start_date,
            planned_end_date=self.planned_end_date,
            # The rate in force from the start: the stated one, unless it was held and replaced.
            daily_rate_pence=self.rate_on(self.start_date),
            out_of_area=self.out_of_area,
            out_of_area_reason=self.out_of_area_reason,
            inappropriate=self.inappropriate,
            distance_from_home_km=self.distance_from_home_km,
            funding=list(self.funding),
        )

    # ------------------------------------------------------------------ changes

    def change_rate(
        self,
        daily_rate_pence: int,
        effective_date: dt.date,
        reason: RateChangeReason | str,
        event_id: str,
        event_time: dt.datetime,
        *,
        held: bool = False,
        asserted_by: str | None = None,
    ) -> RateChange:
        """Record a rate from a date, possibly in the past: the schedule keeps every statement,
        and ``previous_daily_rate_pence`` is what applied on that date before this one. A ``held``
        statement (implausible, not yet confirmed) is kept but not in force."""
        if effective_date < self.start_date:
            raise Refused(
                "before-start",
                f"rate change effective {effective_date} is before placement {self.placement_id} "
                f"started on {self.start_date}",
            )
        if self.end_date is not None and effective_date >= self.end_date:
            raise Refused(
                "after-end",
                f"rate change effective {effective_date} is on or after placement {self.placement_id} "
                f"ended on {self.end_date}",
            )
        entry = RateEntry(
            effective_date,
            daily_rate_pence,
            str(getattr(reason, "value", reason)),
            event_id,
            event_time,
            held=held,
            asserted_by=asserted_by,
        )
        previous = self.rate_on(effective_date)
        stated = [e for e in self.rates if e.effective_date == effective_date]
        if any(e.held and e.daily_rate_pence == daily_rate_pence for e in stated):
            return RateChange("duplicate", entry, previous)  # stating a held rate again does not confirm it
        same_day = [e for e in stated if not e.held]
        if same_day and max(same_day, key=lambda e: e.order).daily_rate_pence == daily_rate_pence:
            return RateChange("duplicate", entry, previous)
        self.rates.append(entry)
        if held:
            return RateChange("held", entry, previous)
        if any(e.order > entry.order for e in same_day):
            return RateChange("superseded", entry, previous)
        return RateChange("applied", entry, previous)

    def record_review(self, review: Review) -> tuple[Literal["recorded", "duplicate"], ReviewSchedule | None]:
        """Record a completed review and move that type's next due date."""
        if review.review_date < self.start_date:
            raise Refused(
                "before-start",
                f"review dated {review.review_date} is before placement {self.placement_id} "
                f"started on {self.start_date}",
            )
        for known in self.reviews:
            if known.review_type is review.review_type and known.review_date == review.review_date:
                if known.same_as(review):
                    return "duplicate", None
                raise Refused(
                    "conflict",
                    f"a different {review.review_type.value} dated {review.review_date} is already recorded "
                    f"for placement {self.placement_id}",
                )
        self.reviews.append(review)
        schedule = self.schedules.get(review.review_type)
        if schedule is None:
            return "recorded", None
        moved = next_due(self.start_date, schedule.rule, self.reviews)
        self.schedules[review.review_type] = moved
        return "recorded", moved

    def end(self, ending: Ending) -> Literal["ended", "duplicate"]:
        if ending.end_date < self.start_date:
            raise Refused(
                "before-start",
                f"end date {ending.end_date} is before placement {self.placement_id} started on {self.start_date}",
            )
        if ending.transfer_to_placement_id == self.placement_id:
            raise Refused("invalid-transfer", "a placement cannot transfer to itself")
        if self.ending is not None:
            if replace(self.ending, event_id=ending.event_id) == ending:
                return "duplicate"
            raise Refused(
                "conflict",
                f"placement {self.placement_id} already ended on {self.ending.end_date} "
                f"({self.ending.end_reason.value})",
            )
        self.ending = ending
        return "ended"


def register(
    made: PlacementMade,
    *,
    patient_ref: str,
    commissioner_area: str,
    site_area: str,
    event_id: str,
    event_time: dt.datetime,
    policy: ReviewPolicy,
    reported_by: str | None = None,
    agreed: bool = False,
    rate_held: bool = False,
) -> Placement:
    """A new placement from a PlacementMade whose site area is known, with its review schedule.

    ``agreed``: the sender may act for the commissioner, so the report is also its agreement;
    if not, the placement records that it awaits the commissioner's (PlacementAwaitingAgreement).
    ``rate_held``: the starting rate is outside the bed type's plausibility bounds."""
    funding = tuple(made.funding) or (FundingShare(commissioner=made.commissioner, share_bp=FULL_SHARE_BP),)
    placement = Placement(
        placement_id=made.placement_id,
        referral_id=made.referral_id,
        patient_ref=patient_ref,
        commissioner=made.commissioner,
        commissioner_area=commissioner_area,
        provider=made.provider,
        provider_site=made.provider_site,
        provider_site_area=site_area,
        independent_provider=made.independent_provider,
        bed_type=made.bed_type,
        cohort=made.cohort,
        age_band=made.age_band,
        legal_status=made.legal_status,
        programme=made.programme,
        start_date=made.start_date,
        planned_end_date=made.planned_end_date,
        initial_daily_rate_pence=made.daily_rate_pence,
        out_of_area_reason=made.out_of_area_reason,
        distance_from_home_km=made.distance_from_home_km,
        funding=funding,
        prior_approval_reference=made.prior_approval_reference,
        registered_event_id=event_id,
        registered_at=event_time,
        reported_by=reported_by,
        agreed_by=reported_by if agreed else None,
        agreed_event_id=event_id if agreed else None,
    )
    placement.rates.append(
        RateEntry(
            made.start_date,
            made.daily_rate_pence,
            "placement_made",
            event_id,
            event_time,
            held=rate_held,
            asserted_by=reported_by,
        )
    )
    rules = policy.rules_for(placement.cohort, placement.age_band, placement.setting, placement.out_of_area)
    placement.schedules = {rule.review_type: next_due(placement.start_date, rule, ()) for rule in rules}
    if not agreed:
        placement.record_event(
            PlacementAwaitingAgreement(
                placement_id=placement.placement_id,
                commissioner=placement.commissioner,
                provider=placement.provider,
                provider_site=placement.provider_site,
                reported_by=reported_by or placement.provider,
                bed_type=placement.bed_type,
                start_date=placement.start_date,
                daily_rate_pence=placement.initial_daily_rate_pence,
                out_of_area=placement.out_of_area,
                funding=list(placement.funding) if len(placement.funding) > 1 else [],
            ),
            id=stable_id("PlacementAwaitingAgreement", placement.placement_id),
            time=event_time,
        )
    return placement
