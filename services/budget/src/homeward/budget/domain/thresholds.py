"""Budget thresholds: one alert per crossing, re-armed only after the forecast falls back.

A threshold of t% is crossed when forecast outturn >= t% of the allocation. Nothing is raised
while nothing is allocated: events arrive in any order, and a year's placements often reach
the ledger before its allocation does.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_PROGRAMMES = "*"


@dataclass(frozen=True)
class ThresholdState:
    breached: bool = False
    arm: int = 0  # how many times it has fallen back below; part of the alert's id


def crossed(allocated: int, forecast: int, percent: int) -> bool:
    return allocated > 0 and forecast * 100 >= percent * allocated


def evaluate(state: ThresholdState, allocated: int, forecast: int, percent: int) -> tuple[ThresholdState, bool]:
    """The next state, and whether to raise an alert now."""
    now = crossed(allocated, forecast, percent)
    if now and not state.breached:
        return ThresholdState(True, state.arm), True
    if not now and state.breached:
        return ThresholdState(False, state.arm + 1), False
    return state, False
