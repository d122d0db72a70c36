"""The pure rules: capacity freshness, triage order, waits, permissions and reports."""

from __future__ import annotations

import datetime as dt

import pytest
from homeward.contracts.vocab import AgeBand, BedType, Cohort, OutOfAreaReason, Urgency
from homeward.referrals.domain.model import BedCount, Placement, PlacementOutcome, Referral
from homeward.referrals.domain.reports import OutOfAreaPlacement, time_to_placement, unmet_need
from homeward.referrals.domain.rules import (
    breached_thresholds,
    end_of_day,
    is_newer,
    may_report_beds,
    may_send_referral,
    median,
    nearest_rank,
    next_threshold,
    rank_local_options,
    whole_hours,
)

T = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PICU = BedType.PICU


def count(site: str, available: int, *, area: str = "QWU", bed_type: BedType = PICU, hours: int = 0) -> BedCount:
    return BedCount(site, site[:3], area, bed_type, available, None, T + dt.timedelta(hours=hours))


def referral(**extra: object) -> Referral:
    data: dict[str, object] = {
        "referral_id": "REF-1",
        "patient_ref": "pt_" + "1" * 32,
        "commissioner": "QWU",
        "home_area": "QWU",
        "bed_type": PICU,
        "cohort": Cohort.MENTAL_HEALTH,
        "age_band": AgeBand.ADULT,
        "urgency": Urgency.URGENT,
        "need_arose_at": T,
        "received_at": T,
    }
    data.update(extra)
    return Referral(**data)  # type: ignore[arg-type]


def placement(
    placement_id: str = "PLC-1", *, commissioner: str = "QWU", start: dt.date = dt.date(2026, 3, 4)
) -> Placement:
    return Placement(placement_id, "REF-1", commissioner, "8HA03", "8HA0301", "QHM", PICU, start, True, None)


def test_a_count_replaces_the_held_one_only_when_taken_later() -> None:
    held = count("RYG01", 2, hours=2)
    assert is_newer(count("RYG01", 0, hours=3), held)
    assert not is_newer(count("RYG01", 5, hours=1), held)
    assert not is_newer(count("RYG01", 5, hours=2), held), "a count taken at the same instant is a resend"
    assert is_newer(count("RYG01", 5, hours=-100), None)


def test_local_options_are_in_area_sites_with_a_free_bed_of_the_type_needed() -> None:
    counts = [
        count("RYG01", 2),
        count("RYG02", 0),
        count("FAR01", 9, area="QHM"),
        count("RYG03", 4, bed_type=BedType.ADULT_ACUTE),
    ]
    assert [c.site for c in rank_local_options("QWU", PICU, counts)] == ["RYG01"]


def test_local_options_put_most_free_beds_first_then_freshest_count_then_site_code() -> None:
    counts = [
        count("RYG05", 1, hours=5),
        count("RYG04", 3, hours=1),
        count("RYG02", 3, hours=4),
        count("RYG01", 1, hours=5),
        count("RYG03", 1, hours=6),
    ]
    ranked = [c.site for c in rank_local_options("QWU", PICU, counts)]
    assert ranked == ["RYG02", "RYG04", "RYG03", "RYG01", "RYG05"]


def test_no_local_options_when_nothing_fits() -> None:
    assert rank_local_options("QWU", PICU, [count("FAR01", 3, area="QHM")]) == []


def test_whole_hours_are_floored_and_never_negative() -> None:
    assert whole_hours(T, T + dt.timedelta(hours=3, minutes=59)) == 3
    assert whole_hours(T, T - dt.timedelta(hours=2)) == 0


def test_a_threshold_is_breached_once_the_whole_hours_waited_reach_it() -> None:
    thresholds = [24, 72]
    assert breached_thresholds(T, thresholds, T + dt.timedelta(hours=23, minutes=59)) == []
    assert breached_thresholds(T, thresholds, T + dt.timedelta(hours=24)) == [24]
    assert breached_thresholds(T, thresholds, T + dt.timedelta(days=30)) == [24, 72]
    assert next_threshold(T, thresholds, T + dt.timedelta(hours=30)) == 72
    assert next_threshold(T, thresholds, T + dt.timedelta(hours=80)) is None


def test_a_referral_comes_from_its_commissioner_or_a_local_provider_only() -> None:
    assert may_send_referral("QWU", "QWU", [])
    assert may_send_referral("RYG", "QWU", ["RYG"])
    assert not may_send_referral("QHM", "QWU", ["RYG"])
    assert not may_send_referral(None, "QWU", [])


def test_a_provider_reports_beds_only_for_itself() -> None:
    assert may_report_beds("RYG", "RYG")
    assert not may_report_beds("QWU", "RYG")
    assert not may_report_beds(None, "RYG")


def test_placing_closes_the_referral_and_measures_the_wait_to_the_start_of_the_placement_day() -> None:
    r = referral()
    assert r.place(placement(start=dt.date(2026, 3, 4))) is PlacementOutcome.CLOSED
    assert r.waited_hours == 39  # 09:00 on 2 March to midnight starting 4 March
    assert not r.is_open and r.placed_out_of_area


def test_a_same_day_placement_waited_zero_hours() -> None:
    r = referral()
    r.place(placement(start=T.date()))
    assert r.waited_hours == 0


def test_a_referral_is_placed_once() -> None:
    r = referral()
    r.place(placement("PLC-1"))
    assert r.place(placement("PLC-1")) is PlacementOutcome.ALREADY_PLACED
    assert r.place(placement("PLC-2")) is PlacementOutcome.ANSWERED_BY_ANOTHER
    assert r.placement is not None and r.placement.placement_id == "PLC-1"


def test_a_placement_of_another_commissioner_does_not_close_the_referral() -> None:
    r = referral()
    assert r.place(placement(commissioner="QHM")) is PlacementOutcome.WRONG_COMMISSIONER
    assert r.is_open


def test_a_referral_is_open_between_need_and_placement_start() -> None:
    r = referral()
    r.place(placement(start=dt.date(2026, 3, 4)))
    assert not r.open_at(T - dt.timedelta(minutes=1))
    assert r.open_at(end_of_day(dt.date(2026, 3, 3)))
    assert not r.open_at(end_of_day(dt.date(2026, 3, 3)) + dt.timedelta(microseconds=1))


def test_unmet_need_counts_no_local_bed_by_bed_type_area_and_month_and_shows_other_reasons() -> None:
    def oap(
        ref: str, day: dt.date, reason: OutOfAreaReason | None, bed: BedType = PICU, area: str = "QWU"
    ) -> OutOfAreaPlacement:
        return OutOfAreaPlacement(ref, "QWU", area, bed, day, reason)

    rows = unmet_need(
        [
            oap("R1", dt.date(2026, 3, 4), OutOfAreaReason.NO_LOCAL_BED),
            oap("R2", dt.date(2026, 3, 31), OutOfAreaReason.NO_LOCAL_BED),
            oap("R3", dt.date(2026, 3, 10), OutOfAreaReason.PATIENT_CHOICE),
            oap("R4", dt.date(2026, 3, 11), None),
            oap("R5", dt.date(2026, 4, 1), OutOfAreaReason.NO_LOCAL_BED),
            oap("R6", dt.date(2026, 3, 5), OutOfAreaReason.NO_LOCAL_BED, bed=BedType.ADULT_ACUTE),
            oap("R7", dt.date(2026, 3, 5), OutOfAreaReason.NO_LOCAL_BED, area="QHM"),
        ]
    )
    table = {(r.month, r.area, r.bed_type): (r.count, r.out_of_area, dict(r.by_reason)) for r in rows}
    assert table == {
        ("2026-03", "QWU", "picu"): (2, 4, {"10": 2, "14": 1, "not_given": 1}),
        ("2026-04", "QWU", "picu"): (1, 1, {"10": 1}),
        ("2026-03", "QWU", "adult_acute"): (1, 1, {"10": 1}),
        ("2026-03", "QHM", "picu"): (1, 1, {"10": 1}),
    }
    assert [(r.month, r.area, r.bed_type) for r in rows] == sorted(table)


@pytest.mark.parametrize(
    ("values", "expected_median", "expected_p90"),
    [
        ([], None, None),
        ([5], 5.0, 5.0),
        ([10, 2], 6.0, 10.0),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 5.5, 9.0),
        ([3, 1, 2], 2.0, 3.0),
    ],
)
def test_median_and_nearest_rank_p90(
    values: list[int], expected_median: float | None, expected_p90: float | None
) -> None:
    assert median(values) == expected_median
    assert nearest_rank(values, 90) == expected_p90


def test_time_to_placement_is_given_overall_and_per_urgency() -> None:
    overall, by_urgency = time_to_placement(
        [(Urgency.URGENT, 30), (Urgency.URGENT, 10), (Urgency.EMERGENCY, 2), (Urgency.URGENT, 20)]
    )
    assert (overall.count, overall.median_hours, overall.p90_hours, overall.max_hours) == (4, 15.0, 30.0, 30)
    assert by_urgency["urgent"].median_hours == 20.0
    assert by_urgency["emergency"].count == 1
    assert "routine" not in by_urgency
