"""Budget thresholds: one alert per crossing, re-armed only after the forecast falls back
clearly below it.

A threshold of t% is crossed when forecast outturn >= t% of the allocation. It re-arms when the
forecast falls below (t - margin)% (default margin 5 points): a forecast wobbling around 90% as
placements start and end would otherwise email the finance lead at every wobble. Nothing is
raised while nothing is allocated: events arrive in any order, and a year's placements often
reach the ledger before its allocation does. And a threshold alerts at most once a day: a
re-crossing on a day it has already alerted is recorded but not sent again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

ALL_PROGRAMMES = "*"


@dataclass(frozen=True)
class ThresholdState:
    breached: bool = False
    arm: int = 0  # how many times it has fallen back below; part of the alert's id
    last_alert_on: dt.date | None = None


def crossed(allocated: int, forecast: int, percent: int) -> bool:
    return allocated > 0 and forecast * 100 >= percent * allocated


def evaluate(
    state: ThresholdState,
    allocated: int,
    forecast: int,
    percent: int,
    rearm_margin: int = 5,
    today: dt.date | None = None,
) -> tuple[ThresholdState, bool]:
    """The next state, and whether to raise an alert now."""
    if crossed(allocated, forecast, percent):
        if state.breached:
            return state, False
        if today is not None and state.last_alert_on == today:
            return replace(state, breached=True), False
        return ThresholdState(True, state.arm, today or state.last_alert_on), True
    if state.breached and allocated > 0 and not crossed(allocated, forecast, percent - rearm_margin):
        return replace(state, breached=False, arm=state.arm + 1), False
    return state, False
