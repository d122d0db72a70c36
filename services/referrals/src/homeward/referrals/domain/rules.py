"""The referrals service's rules, as pure functions.

* Capacity: the latest count per (site, bed type) wins; a count taken at or before the one
  already held is stale and changes nothing (providers' systems resend and reorder).
* Triage: the local options for a referral are the sites in the person's home area with at
  least one free bed of the type needed, according to each site's count as stated at the
  referral's event time (``counts_as_of``), best first: most free beds, then the freshest count,
  then the site code (so the order is total and repeatable).
* Waits run from when the need arose; a threshold is breached once the whole hours waited
  reach it.
* Dates are days in UTC: a placement starting on a date started at 00:00 UTC that day
  (``days``, which the model shares; the day helpers are re-exported here).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence

from homeward.contracts.vocab import BedType

from .days import end_of_day as end_of_day
from .days import start_of_day as start_of_day
from .days import whole_hours
from .model import BedCount


def counts_as_of(history: Iterable[BedCount], area: str, bed_type: BedType, at: dt.datetime) -> list[BedCount]:
    """Each site's count of ``bed_type`` as stated at instant ``at``: its latest count taken at or
    before ``at``, whenever that count arrived; then only the sites that count places in ``area``.

    Two counts of one site taken at the same instant are told apart by the fewer free beds (a bed
    one report says is taken is not offered), so the answer does not depend on arrival order."""
    latest: dict[str, BedCount] = {}
    for c in history:
        if c.bed_type != bed_type or c.as_of > at:
            continue
        held = latest.get(c.site)
        if held is None or (c.as_of, -c.available_beds) > (held.as_of, -held.available_beds):
            latest[c.site] = c
    return sorted((c for c in latest.values() if c.area == area), key=lambda c: c.site)


def triage_basis(counts: Iterable[BedCount]) -> str:
    """What a triage was made from, as text for its event id: every site's count (free beds or
    not) as of the referral's time. It only moves forward as late counts fill the history in, so
    one referral's triage ids never repeat, and the same counts give the same id in any order."""
    return ";".join(
        f"{c.site}@{c.as_of.isoformat()}={c.available_beds}" for c in sorted(counts, key=lambda c: (c.site, c.as_of))
    )


def is_newer(update: BedCount, held: BedCount | None) -> bool:
    """Whether ``update`` replaces the figure held for its site and bed type."""
    return held is None or update.as_of > held.as_of


def rank_local_options(home_area: str, bed_type: BedType, counts: Iterable[BedCount]) -> list[BedCount]:
    """In-area sites with a free bed of ``bed_type``, best first (see the module docstring)."""
    fitting = [c for c in counts if c.area == home_area and c.bed_type == bed_type and c.available_beds >= 1]
    fitting.sort(key=lambda c: c.site)
    fitting.sort(key=lambda c: (c.available_beds, c.as_of), reverse=True)
    return fitting


def area_total(counts: Iterable[BedCount]) -> int:
    return sum(c.available_beds for c in counts)


def breached_thresholds(need_arose_at: dt.datetime, thresholds: Sequence[int], at: dt.datetime) -> list[int]:
    waited = whole_hours(need_arose_at, at)
    return sorted(t for t in set(thresholds) if waited >= t)


def next_threshold(need_arose_at: dt.datetime, thresholds: Sequence[int], at: dt.datetime) -> int | None:
    waited = whole_hours(need_arose_at, at)
    later = [t for t in thresholds if t > waited]
    return min(later) if later else None


def may_send_referral(sender: str | None, commissioner: str, local_providers: Iterable[str]) -> bool:
    """A referral comes from the person's commissioner, or from a clinical team of a provider
    that runs a site in the commissioner's area (per the reference data)."""
    if sender is None:
        return False
    return sender == commissioner or sender in set(local_providers)


def may_report_beds(sender: str | None, provider: str) -> bool:
    """A provider speaks only for its own sites."""
    return sender is not None and sender == provider


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def nearest_rank(values: Sequence[float], percent: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``percent``% at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return float(ordered[rank - 1])
