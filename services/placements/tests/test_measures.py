"""The NHS out-of-area measures from register rows: periods, bed days, costs and bands."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from homeward.placements.domain import Ending, Placement, register
from homeward.placements.domain.measures import DISTANCE_BANDS, LENGTH_OF_STAY_BANDS, Period, band_of, measures, total

from .placements_support import FAR_AREA, HOME, at, default_policy, placement_made

OCT = Period.month(2026, 10)
LATER = dt.date(2026, 11, 20)


def made(
    pid: str,
    start: str,
    *,
    end: str | None = None,
    rate: int = 54_500,
    reason: str | None = "10",
    km: int | None = 120,
    commissioner: str = HOME,
    site_area: str = FAR_AREA,
    rates: tuple[tuple[str, int], ...] = (),
) -> Placement:
    extra: dict[str, Any] = {}
    if reason is not None:
        extra["out_of_area_reason"] = reason
    if km is not None:
        extra["distance_from_home_km"] = km
    p = register(
        placement_made(f"P-{pid}", start=start, rate=rate, commissioner=commissioner, site_area=site_area, **extra),
        patient_ref=f"ref-{pid}",
        commissioner_area=commissioner,
        site_area=site_area,
        event_id=f"e-{pid}",
        event_time=at(start),
        policy=default_policy(),
        reported_by=commissioner,
        agreed=True,
    )
    for day, r in rates:
        p.change_rate(r, dt.date.fromisoformat(day), "uplift", f"r-{pid}-{day}", at(day))
    if end is not None:
        p.end(Ending(dt.date.fromisoformat(end), "discharged", None, f"end-{pid}"))  # type: ignore[arg-type]
    return p


def test_a_month_counts_nights_costs_starts_ends_and_who_is_still_away() -> None:
    register_rows = [
        made("A", "2026-09-20"),  # before, still there: 31 nights in October
        made("B", "2026-10-10", end="2026-10-15"),  # 5 nights, started and ended in October
        made("C", "2026-09-01", end="2026-10-01", reason="14"),  # left on 1 October: no October night
        made("D", "2026-10-31", rate=60_000),  # one night, on the 31st
        made("E", "2026-11-01"),  # after the period
        made("F", "2026-08-01", end="2026-09-30"),  # before the period
        made("G", "2026-10-05", site_area=HOME),  # in area: never an out-of-area measure
    ]
    m = measures(register_rows, OCT, LATER)[HOME]
    a = m["all"]
    assert a["active_at_end"] == 2  # A and D
    assert (a["started"], a["ended"]) == (2, 2)  # B, D; B, C
    assert a["oap_days"] == 31 + 5 + 0 + 1
    assert a["total_cost_pence"] == (31 + 5) * 54_500 + 60_000
    assert a["average_daily_cost_pence"] == round(((31 + 5) * 54_500 + 60_000) / 37)
    assert a["active_in_period"] == 3  # A, B, D (C left on the first day, before its night)
    inappropriate = m["inappropriate"]
    assert (inappropriate["active_at_end"], inappropriate["ended"], inappropriate["oap_days"]) == (2, 1, 37)
    assert m["length_of_stay"] == {"1-7": 1, "8-14": 0, "15-30": 1, "31-90": 0, "91+": 0}  # B 5, C 30
    assert m["by_reason"]["10"] == {"placements": 3, "oap_days": 37}
    assert m["appropriate"] == {"placements": 0, "oap_days": 0}


def test_rates_in_force_each_night_and_the_average_rounds_half_up() -> None:
    p = made("A", "2026-10-01", rate=100, rates=(("2026-10-02", 101),))
    m = measures([p], Period(dt.date(2026, 10, 1), dt.date(2026, 10, 2)), LATER)[HOME]["all"]
    assert (m["oap_days"], m["total_cost_pence"], m["average_daily_cost_pence"]) == (2, 201, 101)  # 100.5 -> 101


def test_a_period_reaching_past_today_is_measured_to_date() -> None:
    p = made("A", "2026-11-01")
    ended_later = made("B", "2026-11-01", end="2026-11-25")
    got = measures([p, ended_later], Period.month(2026, 11), LATER)[HOME]["all"]
    assert got["oap_days"] == 2 * 19  # the nights of 1 to 19 November: the 20th's has not passed
    assert got["ended"] == 0  # B's end is after today
    assert got["active_at_end"] == 2


def test_no_out_of_area_placement_means_no_row_and_zero_totals() -> None:
    assert measures([made("G", "2026-10-05", site_area=HOME)], OCT, LATER) == {}
    empty = total({})
    assert empty["all"]["oap_days"] == 0 and empty["all"]["average_daily_cost_pence"] is None


def test_commissioners_are_measured_apart_and_totals_add_up() -> None:
    rows = [made("A", "2026-10-01", commissioner="05A"), made("B", "2026-10-01", commissioner="05R", reason="11")]
    by = measures(rows, OCT, LATER)
    assert set(by) == {"05A", "05R"}
    assert by["05R"]["appropriate"] == {"placements": 1, "oap_days": 31}
    assert by["05R"]["by_reason"]["11"]["placements"] == 1
    t = total(by)
    assert t["all"]["oap_days"] == 62
    assert t["by_reason"]["10"]["placements"] == t["by_reason"]["11"]["placements"] == 1


@pytest.mark.parametrize(
    ("km", "band"),
    [(0, "<25"), (24, "<25"), (25, "25-50"), (49, "25-50"), (50, "50-100"), (100, "100-200"), (199, "100-200")]
    + [(200, "200-300"), (299, "200-300"), (300, "300+"), (5000, "300+")],
)
def test_distance_bands_include_their_lower_bound(km: int, band: str) -> None:
    assert band_of(km, DISTANCE_BANDS, upper_inclusive=False) == band


@pytest.mark.parametrize(
    ("nights", "band"),
    [(0, "1-7"), (1, "1-7"), (7, "1-7"), (8, "8-14"), (14, "8-14"), (15, "15-30"), (30, "15-30"), (31, "31-90")]
    + [(90, "31-90"), (91, "91+"), (4000, "91+")],
)
def test_length_of_stay_bands_are_the_nhs_ones(nights: int, band: str) -> None:
    assert band_of(nights, LENGTH_OF_STAY_BANDS, upper_inclusive=True) == band


def test_unknown_distance_and_unstated_reason_have_their_own_rows() -> None:
    m = measures([made("A", "2026-10-01", km=None, reason=None)], OCT, LATER)[HOME]
    assert m["distance"]["unknown"] == 1
    assert m["by_reason"]["not stated"] == {"placements": 1, "oap_days": 31}
    assert m["appropriate"]["placements"] == 1 and m["inappropriate"]["active_in_period"] == 0


def test_a_month_is_parsed_and_a_period_cannot_run_backwards() -> None:
    assert Period.parse_month("2024-02") == Period(dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert Period.parse_month("2026-10").label == "2026-10"
    with pytest.raises(ValueError, match="2026-10"):
        Period.parse_month("October")
    with pytest.raises(ValueError, match="before"):
        Period(dt.date(2026, 10, 2), dt.date(2026, 10, 1))
