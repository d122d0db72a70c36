"""Referrals, bed counts and placements as the referrals service sees them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from homeward.contracts.events import LocalCapacityUnavailable, LocalOption, ReferralTriaged
from homeward.contracts.vocab import AgeBand, BedType, Cohort, LegalStatus, OutOfAreaReason, Urgency, WithdrawalReason
from homeward.kit.aggregate import Aggregate
from homeward.kit.identity import stable_id

from .days import start_of_day, whole_hours


class Refused(Exception):
    """A fact the service refuses (the handler table dead-letters the event with ``reason``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class BedCount:
    """Free beds of one type at one site, as counted by its provider at ``as_of``."""

    site: str
    provider: str
    area: str
    bed_type: BedType
    available_beds: int
    total_beds: int | None
    as_of: dt.datetime


@dataclass(frozen=True)
class Placement:
    """A placement registered against a referral (from placements' PlacementRegistered)."""

    placement_id: str
    referral_id: str
    commissioner: str
    provider: str
    site: str
    site_area: str
    bed_type: BedType
    start_date: dt.date
    out_of_area: bool
    out_of_area_reason: OutOfAreaReason | None = None

    @property
    def placed_at(self) -> dt.datetime:
        return start_of_day(self.start_date)


@dataclass(frozen=True)
class Withdrawal:
    """The referrer's statement that the bed is no longer needed (``ReferralWithdrawn``)."""

    referral_id: str
    commissioner: str
    withdrawn_at: dt.datetime
    reason: WithdrawalReason
    event_id: str
    organisation: str

    def earlier_of(self, other: Withdrawal) -> Withdrawal:
        """Of two withdrawals of one referral, the one that stands: the earliest, whatever the
        order they arrived in (then the smaller event id, so the choice is total)."""
        return min(self, other, key=lambda w: (w.withdrawn_at, w.event_id))


class PlacementOutcome(StrEnum):
    CLOSED = "closed"
    ALREADY_PLACED = "already-placed"
    ANSWERED_BY_ANOTHER = "answered-by-another"
    WRONG_COMMISSIONER = "wrong-commissioner"


@dataclass
class Referral(Aggregate):
    referral_id: str
    patient_ref: str
    commissioner: str
    home_area: str
    bed_type: BedType
    cohort: Cohort
    age_band: AgeBand
    urgency: Urgency
    need_arose_at: dt.datetime
    received_at: dt.datetime
    legal_status: LegalStatus | None = None
    local_options: tuple[BedCount, ...] = ()
    placement: Placement | None = None
    waited_hours: int | None = None
    triaged_as_of: dt.datetime | None = None
    """The instant whose bed counts the triage used: the referral's event time."""
    triage_id: str | None = None
    """The id of the ReferralTriaged that stands (it names the counts it was made from)."""
    withdrawal: Withdrawal | None = None

    @property
    def is_open(self) -> bool:
        return self.placement is None and self.withdrawal is None

    @property
    def status(self) -> str:
        """placed (a placement answers it, even one after a withdrawal), withdrawn, or open."""
        if self.placement is not None:
            return "placed"
        return "withdrawn" if self.withdrawal is not None else "open"

    def open_at(self, at: dt.datetime) -> bool:
        """Waiting at instant ``at``: the need had arisen, no placement had started and it had
        not been withdrawn."""
        return (
            self.need_arose_at <= at
            and (self.placement is None or self.placement.placed_at > at)
            and (self.withdrawal is None or self.withdrawal.withdrawn_at > at)
        )

    def wait_hours(self, at: dt.datetime) -> int:
        return whole_hours(self.need_arose_at, at)

    def same_request(self, other: Referral) -> bool:
        """True when ``other`` asks for the same thing (a resend), whatever its event id."""
        keys = (
            "patient_ref",
            "commissioner",
            "home_area",
            "bed_type",
            "cohort",
            "age_band",
            "urgency",
            "need_arose_at",
            "legal_status",
        )
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def triage(self, options: Sequence[BedCount], at: dt.datetime, triage_id: str) -> bool:
        """Take ``options`` (ranked) as the local options as of ``at``; ``triage_id`` names the
        counts they were made from. Records a ``ReferralTriaged`` that supersedes the one before;
        False, recording nothing, if the referral was triaged on these counts already."""
        if triage_id == self.triage_id:
            return False
        before = self.triage_id
        self.local_options, self.triaged_as_of, self.triage_id = tuple(options), at, triage_id
        self.record_event(
            ReferralTriaged(
                referral_id=self.referral_id,
                patient_ref=self.patient_ref,
                commissioner=self.commissioner,
                home_area=self.home_area,
                bed_type=self.bed_type,
                cohort=self.cohort,
                urgency=self.urgency,
                local_options=[
                    LocalOption(provider=c.provider, site=c.site, available_beds=c.available_beds, as_of=c.as_of)
                    for c in options
                ],
                capacity_as_of=at,
                supersedes=before,
            ),
            id=triage_id,
            time=at,
        )
        return True

    def place(self, placement: Placement) -> PlacementOutcome:
        """Close the referral with ``placement``; the waiting time runs to the placement's start.
        An out-of-area placement records the unmet local need (``LocalCapacityUnavailable``)."""
        if placement.commissioner != self.commissioner:
            return PlacementOutcome.WRONG_COMMISSIONER
        if self.placement is not None:
            if self.placement.placement_id == placement.placement_id:
                return PlacementOutcome.ALREADY_PLACED
            return PlacementOutcome.ANSWERED_BY_ANOTHER
        self.placement = placement
        self.waited_hours = whole_hours(self.need_arose_at, placement.placed_at)
        if placement.out_of_area:
            self.record_event(
                LocalCapacityUnavailable(
                    referral_id=self.referral_id,
                    placement_id=placement.placement_id,
                    commissioner=self.commissioner,
                    home_area=self.home_area,
                    bed_type=self.bed_type,
                    cohort=self.cohort,
                    placed_site=placement.site,
                    placed_on=placement.start_date,
                    out_of_area_reason=placement.out_of_area_reason,
                    waited_hours=self.waited_hours,
                ),
                id=stable_id("LocalCapacityUnavailable", self.referral_id, placement.placement_id),
                time=placement.placed_at,
            )
        return PlacementOutcome.CLOSED

    @property
    def placed_out_of_area(self) -> bool:
        return self.placement is not None and self.placement.out_of_area
