"""A placement's daily rate over time, and what it costs over a range of nights."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from .calendar import nights, split_by_fy
from .money import Share, split_pence


@dataclass(frozen=True)
class RateSchedule:
    """Daily rates in pence by effective date; the first entry is the start date.

    A change effective on or before the start replaces the starting rate. Rates may be
    negative only for memo streams (a saving that turned out to be a cost).
    """

    rates: tuple[tuple[dt.date, int], ...]

    @classmethod
    def starting(cls, start: dt.date, rate: int) -> RateSchedule:
        return cls(((start, rate),))

    @property
    def start(self) -> dt.date:
        return self.rates[0][0]

    def with_rate_from(self, effective: dt.date, rate: int) -> RateSchedule:
        effective = max(effective, self.start)
        kept = [(d, r) for d, r in self.rates if d != effective]
        kept.append((effective, rate))
        return RateSchedule(tuple(sorted(kept)))

    def rate_on(self, day: dt.date) -> int:
        dates = [d for d, _ in self.rates]
        i = bisect.bisect_right(dates, day) - 1
        return self.rates[max(i, 0)][1]

    def segments(self, start: dt.date, end: dt.date) -> list[tuple[dt.date, dt.date, int]]:
        """``[start, end)`` cut where the rate changes: (first night, exclusive end, daily rate)."""
        if end <= start:
            return []
        cuts = sorted({start, end, *(d for d, _ in self.rates if start < d < end)})
        return [(a, b, self.rate_on(a)) for a, b in itertools.pairwise(cuts)]

    def cost(self, start: dt.date, end: dt.date) -> int:
        return sum(rate * nights(a, b) for a, b, rate in self.segments(start, end))

    def funder_cost(self, start: dt.date, end: dt.date, shares: Sequence[Share]) -> dict[str, int]:
        """Each funder's part: every night's rate is split by the largest-remainder method, so parts
        over adjacent ranges add up and the funders' parts always add up to ``cost``."""
        out = {s.funder: 0 for s in shares}
        for a, b, rate in self.segments(start, end):
            n = nights(a, b)
            for funder, part in split_pence(rate, shares).items():
                out[funder] += part * n
        return out

    def funder_cost_by_fy(self, start: dt.date, end: dt.date, shares: Sequence[Share]) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for year, a, b in split_by_fy(start, end):
            for funder, amount in self.funder_cost(a, b, shares).items():
                out[(funder, year)] = out.get((funder, year), 0) + amount
        return out
