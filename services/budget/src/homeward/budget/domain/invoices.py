"""Matching a provider's invoice against what the ledger accrues for the same placement and nights.

The invoice covers the bed-days ``period_start`` to ``period_end`` inclusive. The accrued figure
is the placement's rate schedule over those nights that fall within the stay (from the start to
the discharge day), which is exactly what the accrual job posts (or will post) for them, so an
invoice that arrives before the nightly run raises no false alarm. The tolerance is the larger
of a fixed amount and a percentage of the accrued figure; a variance beyond it is reported.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .schedule import RateSchedule


def accrued_for_period(schedule: RateSchedule, end: dt.date | None, period_start: dt.date, period_end: dt.date) -> int:
    first = max(period_start, schedule.start)
    stop = period_end + dt.timedelta(days=1)
    if end is not None:
        stop = min(stop, max(end, schedule.start))
    return schedule.cost(first, stop) if stop > first else 0


def tolerance(accrued: int, tolerance_pence: int, tolerance_percent: int) -> int:
    return max(tolerance_pence, abs(accrued) * tolerance_percent // 100)


@dataclass(frozen=True)
class Assessment:
    invoiced: int
    accrued: int
    tolerance: int

    @property
    def variance(self) -> int:
        return self.invoiced - self.accrued

    @property
    def beyond_tolerance(self) -> bool:
        return abs(self.variance) > self.tolerance


def assess(invoiced: int, accrued: int, tolerance_pence: int, tolerance_percent: int) -> Assessment:
    return Assessment(invoiced, accrued, tolerance(accrued, tolerance_pence, tolerance_percent))
