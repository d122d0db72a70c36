"""The referrals service's rules, as pure functions.

* Capacity: the latest count per (site, bed type) wins; a count taken at or before the one
  already held is stale and changes nothing (providers' systems resend and reorder).
* Triage: the local options for a referral are the sites in the person's home area with at
  least one free bed of the type needed, best first: most free beds, then the freshest count,
  then the site code (so the order is total and repeatable).
* Waits run from when the need arose; a threshold is breached once the whole hours waited
  reach it.
* Dates are days in UTC: a placement starting on a date started at 00:00 UTC that day.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from homeward.contracts.vocab import BedType

if TYPE_CHECKING:
    from .model import BedCount


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


def start_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)


def end_of_day(day: dt.date) -> dt.datetime:
    """The instant a date's figures are taken at: the last moment of that day (UTC), so that
    a placement starting the next day has not started yet."""
    return start_of_day(day + dt.timedelta(days=1)) - dt.timedelta(microseconds=1)


def whole_hours(start: dt.datetime, end: dt.datetime) -> int:
    """Complete hours from ``start`` to ``end``; never negative."""
    return max(0, int((end - start).total_seconds() // 3600))


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
