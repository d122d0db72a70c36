"""The NHS out-of-area placement measures, for any period, from the placement register.

Pure: a function of the register's placements, a period and the day the figures are "as of".
The definitions follow NHS Digital's out-of-area placement statistics (DOMAIN.md, "Published
measures"); where Homeward has to choose, the choice is written here and in docs/placements.md.

* **Population.** Out-of-area placements (the site's commissioning area differs from the
  commissioner's), every one in the register, those awaiting the commissioner's agreement too:
  the measures describe where people are, the budget what is charged. Each placement counts for
  its commissioner (the responsible one), whole, whatever the funding shares.
* **To date.** Nothing after ``as_of`` has happened yet: a period reaching past it is measured
  up to it (``complete`` is False), and its "end" is ``as_of``.
* **Active at the period's end**: placed on its last day and not leaving that day (the end
  date is the day of leaving, as everywhere in the register).
* **OAP days**: bed days, one per midnight (DOMAIN.md, "Money"): the nights dated in the
  period, from the start date up to the night before the end date, and before ``as_of``.
* **Total recorded cost**: the daily rate in force on each of those nights (held, unconfirmed
  rates are not in force), in pence. **Average daily cost** = total / OAP days, rounded to the
  nearest penny (half up); none when there are no days.
* **Length-of-stay bands**: completed stays (ended in the period), in nights
  (end date - start date): 1-7, 8-14, 15-30, 31-90, 91+. A same-day stay (0 nights) is counted
  in 1-7.
* **Distance bands**: the placements active on some day of the period, by distance from home
  in km: <25, 25-50, 50-100, 100-200, 200-300, 300+ (each band includes its lower bound), and
  ``unknown`` when no distance was stated.
* **By reason code** (MHSDS ReasonOAT): the placements active on some day of the period and
  their OAP days, per code; ``not stated`` when none was given. Reason 10 (no local bed) is
  *inappropriate*, every other code *appropriate*; the headline figures are also given for the
  inappropriate placements alone.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from homeward.contracts.vocab import OutOfAreaReason

from .model import Placement

ONE_DAY = dt.timedelta(days=1)

LENGTH_OF_STAY_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("1-7", 0, 7),
    ("8-14", 8, 14),
    ("15-30", 15, 30),
    ("31-90", 31, 90),
    ("91+", 91, None),
)
DISTANCE_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("<25", 0, 25),
    ("25-50", 25, 50),
    ("50-100", 50, 100),
    ("100-200", 100, 200),
    ("200-300", 200, 300),
    ("300+", 300, None),
)
UNKNOWN_DISTANCE = "unknown"
NOT_STATED = "not stated"
REASON_CODES = (*(r.value for r in OutOfAreaReason), NOT_STATED)


@dataclass(frozen=True)
class Period:
    """Calendar days ``start`` to ``end``, both included."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"a period cannot end ({self.end}) before it starts ({self.start})")

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        return cls(dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1]))

    @classmethod
    def parse_month(cls, text: str) -> Period:
        """``2026-10`` -> 1 to 31 October 2026."""
        try:
            year, month = (int(x) for x in text.split("-"))
            return cls.month(year, month)
        except ValueError:
            raise ValueError(f"a month is written like 2026-10, not {text!r}") from None

    @property
    def label(self) -> str:
        last = calendar.monthrange(self.start.year, self.start.month)[1]
        if self.start.day == 1 and self.end == self.start.replace(day=last):
            return self.start.strftime("%Y-%m")
        return f"{self.start.isoformat()} to {self.end.isoformat()}"


def band_of(value: int, bands: tuple[tuple[str, int, int | None], ...], *, upper_inclusive: bool) -> str:
    for label, low, high in bands:
        if value >= low and (high is None or (value <= high if upper_inclusive else value < high)):
            return label
    return bands[0][0]  # below the first band (a negative distance cannot be stated)


def _nights(p: Placement, first: dt.date, last: dt.date) -> list[dt.date]:
    """The nights of ``p`` dated ``first`` to ``last`` (both included)."""
    start = max(p.start_date, first)
    stop = last if p.end_date is None else min(last, p.end_date - ONE_DAY)
    if stop < start:
        return []
    return [start + dt.timedelta(days=i) for i in range((stop - start).days + 1)]


def _average(total: int, days: int) -> int | None:
    return None if days == 0 else (2 * total + days) // (2 * days)


def _empty() -> dict[str, Any]:
    return {
        "active_at_end": 0,
        "started": 0,
        "ended": 0,
        "oap_days": 0,
        "total_cost_pence": 0,
        "average_daily_cost_pence": None,
        "active_in_period": 0,
    }


def measures(placements: Iterable[Placement], period: Period, as_of: dt.date) -> dict[str, dict[str, Any]]:
    """Commissioner -> its measures for ``period`` as known on ``as_of``. A commissioner with no
    out-of-area placement in the period is absent."""
    end = min(period.end, as_of)
    last_night = min(period.end, as_of - ONE_DAY)
    out: dict[str, dict[str, Any]] = {}
    for p in placements:
        if not p.out_of_area or p.start_date > end:
            continue
        active_in_period = p.end_date is None or p.end_date > period.start
        started = period.start <= p.start_date <= end
        ended = p.end_date is not None and period.start <= p.end_date <= end
        if not (active_in_period or started or ended):
            continue
        m = out.setdefault(p.commissioner, _new_commissioner())
        nights = _nights(p, period.start, last_night)
        cost = sum(p.rate_on(n) for n in nights)
        reason = p.out_of_area_reason.value if p.out_of_area_reason is not None else NOT_STATED
        groups = [m["all"], m["inappropriate"]] if p.inappropriate else [m["all"]]
        for g in groups:
            g["active_at_end"] += int(p.active_on(end))
            g["started"] += int(started)
            g["ended"] += int(ended)
            g["oap_days"] += len(nights)
            g["total_cost_pence"] += cost
            g["active_in_period"] += int(active_in_period)
        if ended:
            assert p.end_date is not None
            stay = (p.end_date - p.start_date).days
            m["length_of_stay"][band_of(stay, LENGTH_OF_STAY_BANDS, upper_inclusive=True)] += 1
        if active_in_period:
            km = p.distance_from_home_km
            band = UNKNOWN_DISTANCE if km is None else band_of(km, DISTANCE_BANDS, upper_inclusive=False)
            m["distance"][band] += 1
            r = m["by_reason"][reason]
            r["placements"] += 1
            r["oap_days"] += len(nights)
    for m in out.values():
        for g in (m["all"], m["inappropriate"]):
            g["average_daily_cost_pence"] = _average(g["total_cost_pence"], g["oap_days"])
        appropriate = {
            k: sum(v[k] for code, v in m["by_reason"].items() if code != OutOfAreaReason.NO_LOCAL_BED.value)
            for k in ("placements", "oap_days")
        }
        m["appropriate"] = appropriate
    return dict(sorted(out.items()))


def _new_commissioner() -> dict[str, Any]:
    return {
        "all": _empty(),
        "inappropriate": _empty(),
        "length_of_stay": {label: 0 for label, _, _ in LENGTH_OF_STAY_BANDS},
        "distance": {**{label: 0 for label, _, _ in DISTANCE_BANDS}, UNKNOWN_DISTANCE: 0},
        "by_reason": {code: {"placements": 0, "oap_days": 0} for code in REASON_CODES},
    }


def total(per_commissioner: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every commissioner's measures added up (averages recomputed from the totals)."""
    out = _new_commissioner()
    out["appropriate"] = {"placements": 0, "oap_days": 0}
    for m in per_commissioner.values():
        for g in ("all", "inappropriate"):
            for k, v in m[g].items():
                if k != "average_daily_cost_pence":
                    out[g][k] += v
        for section in ("length_of_stay", "distance"):
            for k, v in m[section].items():
                out[section][k] += v
        for code, v in m["by_reason"].items():
            for k in ("placements", "oap_days"):
                out["by_reason"][code][k] += v[k]
        for k in ("placements", "oap_days"):
            out["appropriate"][k] += m["appropriate"][k]
    for g in ("all", "inappropriate"):
        out[g]["average_daily_cost_pence"] = _average(out[g]["total_cost_pence"], out[g]["oap_days"])
    return out
