"""Reports commissioners take to planning meetings, computed from closed referrals."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from homeward.contracts.vocab import BedType, OutOfAreaReason, Urgency

from .rules import median, nearest_rank

NOT_GIVEN = "not_given"


@dataclass(frozen=True)
class OutOfAreaPlacement:
    """A referral that ended in an out-of-area placement."""

    referral_id: str
    commissioner: str
    home_area: str
    bed_type: BedType
    placed_on: dt.date
    reason: OutOfAreaReason | None


@dataclass(frozen=True)
class UnmetNeedRow:
    bed_type: str
    area: str
    month: str
    count: int
    """Out-of-area placements for lack of a local bed (reason 10): the unmet local need."""
    out_of_area: int
    """All out-of-area placements answering referrals, whatever the reason."""
    by_reason: Mapping[str, int] = field(default_factory=dict)


def unmet_need(placements: Iterable[OutOfAreaPlacement]) -> list[UnmetNeedRow]:
    """Out-of-area placements by bed type, home area and month of placement.

    ``count`` holds only reason 10 (no local bed), the NHS definition of an inappropriate OAP;
    the other reasons, and placements with no reason given, are shown beside it in ``by_reason``
    so that poor reason recording is visible rather than hidden.
    """
    groups: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for p in placements:
        reason = p.reason.value if p.reason is not None else NOT_GIVEN
        groups[(p.bed_type.value, p.home_area, p.placed_on.strftime("%Y-%m"))][reason] += 1
    rows = [
        UnmetNeedRow(
            bed_type=bed_type,
            area=area,
            month=month,
            count=reasons[OutOfAreaReason.NO_LOCAL_BED.value],
            out_of_area=sum(reasons.values()),
            by_reason=dict(sorted(reasons.items())),
        )
        for (bed_type, area, month), reasons in groups.items()
    ]
    rows.sort(key=lambda r: (r.month, r.area, r.bed_type))
    return rows


@dataclass(frozen=True)
class TimeStats:
    count: int
    median_hours: float | None
    p90_hours: float | None
    max_hours: int | None


def time_stats(hours: Sequence[int]) -> TimeStats:
    return TimeStats(
        count=len(hours),
        median_hours=median(hours),
        p90_hours=nearest_rank(hours, 90),
        max_hours=max(hours) if hours else None,
    )


def time_to_placement(waits: Iterable[tuple[Urgency, int]]) -> tuple[TimeStats, dict[str, TimeStats]]:
    """Overall and per-urgency statistics of hours from need to placement."""
    by_urgency: dict[str, list[int]] = defaultdict(list)
    everything: list[int] = []
    for urgency, hours in waits:
        by_urgency[urgency.value].append(hours)
        everything.append(hours)
    return time_stats(everything), {u: time_stats(h) for u, h in sorted(by_urgency.items())}
