"""Repatriation: a person placed out of area comes home.

Matched (``explicit=False``): an out-of-area placement ends with a *transfer*, and an in-area
placement for the same person (same pseudonymous patient reference) starts within the
window of that end date, whichever of the two facts arrives first. If the transfer names
its target (``transfer_to_placement_id``), only that placement can match.

Stated (``explicit=True``): a partner ends a placement with *repatriated* and names the
placement the person moved to; it counts as soon as both placements are known.

Either way there is at most one repatriation per move: per placement left, and per
placement arrived at.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace

from homeward.contracts.events import FundingShare, PatientRepatriated, RepatriationCorrected
from homeward.contracts.vocab import EndReason, Programme

from .model import Placement, Refused


@dataclass(frozen=True)
class Repatriation:
    patient_ref: str
    commissioner: str
    programme: Programme
    from_placement_id: str
    to_placement_id: str
    from_site: str
    to_site: str
    from_daily_rate_pence: int
    to_daily_rate_pence: int
    repatriated_on: dt.date
    explicit: bool
    funding: tuple[FundingShare, ...]

    def payload(self) -> PatientRepatriated:
        return PatientRepatriated(
            patient_ref=self.patient_ref,
            commissioner=self.commissioner,
            programme=self.programme,
            from_placement_id=self.from_placement_id,
            to_placement_id=self.to_placement_id,
            from_site=self.from_site,
            to_site=self.to_site,
            from_daily_rate_pence=self.from_daily_rate_pence,
            to_daily_rate_pence=self.to_daily_rate_pence,
            repatriated_on=self.repatriated_on,
            explicit=self.explicit,
            funding=list(self.funding),
        )


def repatriation(source: Placement, target: Placement, *, explicit: bool) -> Repatriation:
    """The move home, with the rates in force at the move: the source's on its last night and
    the target's on its first."""
    return Repatriation(
        patient_ref=source.patient_ref,
        commissioner=source.commissioner,
        programme=source.programme,
        from_placement_id=source.placement_id,
        to_placement_id=target.placement_id,
        from_site=source.provider_site,
        to_site=target.provider_site,
        from_daily_rate_pence=source.rate_on(source.last_night()),
        to_daily_rate_pence=target.rate_on(target.start_date),
        repatriated_on=target.start_date,
        explicit=explicit,
        funding=source.funding,
    )


def corrected(recorded: Repatriation, source: Placement, target: Placement) -> Repatriation | None:
    """The move with the rates now in force at it, or None if they are the ones recorded. A rate
    change stated after the move, taking effect on or before it, changes what the move saved."""
    now = repatriation(source, target, explicit=recorded.explicit)
    rates = (now.from_daily_rate_pence, now.to_daily_rate_pence)
    if rates == (recorded.from_daily_rate_pence, recorded.to_daily_rate_pence):
        return None
    return replace(recorded, from_daily_rate_pence=rates[0], to_daily_rate_pence=rates[1])


def correction(recorded: Repatriation, now: Repatriation, corrects_event_id: str) -> RepatriationCorrected:
    return RepatriationCorrected(
        **now.payload().model_dump(),
        reason="rate-changed",
        corrects_event_id=corrects_event_id,
        previous_from_daily_rate_pence=recorded.from_daily_rate_pence,
        previous_to_daily_rate_pence=recorded.to_daily_rate_pence,
    )


def moved_at(move: Repatriation) -> dt.datetime:
    """When the move happened, for the event's time: the start (00:00 UTC) of the day home."""
    return dt.datetime.combine(move.repatriated_on, dt.time(), dt.UTC)


def may_match(source: Placement, target: Placement, window_days: int) -> bool:
    """Whether an ended out-of-area transfer and a new in-area placement are one move home."""
    ending = source.ending
    if ending is None or ending.end_reason is not EndReason.TRANSFER or not source.out_of_area:
        return False
    if target.out_of_area or target.placement_id == source.placement_id:
        return False
    if target.patient_ref != source.patient_ref:
        return False
    if ending.transfer_to_placement_id is not None and ending.transfer_to_placement_id != target.placement_id:
        return False
    # A placement that began before the one being left is where the person came from, not where they went.
    if target.start_date < source.start_date:
        return False
    return abs((target.start_date - ending.end_date).days) <= window_days


def _closeness(source: Placement, target: Placement) -> int:
    assert source.ending is not None
    return abs((target.start_date - source.ending.end_date).days)


def best_target(source: Placement, candidates: Iterable[Placement], window_days: int) -> Placement | None:
    """The in-area placement the person moved to: the one starting nearest the end date."""
    fits = [t for t in candidates if may_match(source, t, window_days)]
    return min(fits, key=lambda t: (_closeness(source, t), t.start_date, t.placement_id), default=None)


def best_source(target: Placement, candidates: Iterable[Placement], window_days: int) -> Placement | None:
    """The out-of-area placement a new in-area placement completes: the one ending nearest its start."""
    fits = [s for s in candidates if may_match(s, target, window_days)]
    return min(fits, key=lambda s: (_closeness(s, target), s.placement_id), default=None)


def check_stated(source: Placement, target: Placement) -> None:
    """A stated repatriation must name a placement of the same person."""
    if target.patient_ref != source.patient_ref:
        raise Refused(
            "patient-mismatch",
            f"placement {source.placement_id} names {target.placement_id} as the placement the person moved to, "
            "but that placement is for another person",
        )
