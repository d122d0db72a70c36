"""The read API's payloads keep their field names, order and JSON forms (the staff view and
the end-to-end tests read them)."""

from __future__ import annotations

import datetime as dt

from homeward.placements.entrypoints.views import CandidateView, PlacementView, ScheduleView, jsonable
from placements_support import HOME, Register, event, placement_made, rate_changed


async def test_a_placement_is_shown_with_the_same_fields_in_the_same_order_as_of_a_day() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1", rate=54500, out_of_area_reason="10")))
    await reg.send(event(rate_changed("PLC-1", 56000, "2026-02-01")))
    p = reg.placement("PLC-1")

    shown = jsonable(PlacementView.of(p, dt.date(2026, 2, 3)))
    assert list(shown) == [
        "placement_id",
        "referral_id",
        "patient_ref",
        "commissioner",
        "commissioner_area",
        "provider",
        "provider_site",
        "provider_site_area",
        "independent_provider",
        "bed_type",
        "setting",
        "cohort",
        "age_band",
        "legal_status",
        "programme",
        "start_date",
        "planned_end_date",
        "end_date",
        "end_reason",
        "out_of_area",
        "out_of_area_reason",
        "inappropriate",
        "distance_from_home_km",
        "daily_rate_pence",
        "funding",
        "status",
        "reported_by",
        "agreed_by",
        "held_rates",
    ]
    assert {
        k: shown[k] for k in ("bed_type", "start_date", "daily_rate_pence", "funding", "status", "out_of_area")
    } == {
        "bed_type": "adult_acute",
        "start_date": "2026-01-05",
        "daily_rate_pence": 56000,
        "funding": [{"commissioner": HOME, "share_bp": 10000}],
        "status": "agreed",
        "out_of_area": True,
    }
    assert jsonable(PlacementView.of(p, dt.date(2026, 1, 31)))["daily_rate_pence"] == 54500

    at = dt.datetime(2026, 2, 1, 9, tzinfo=dt.UTC)
    candidate = jsonable(
        CandidateView.of(p, dt.date(2026, 2, 3), local_area=HOME, local_available_beds=2, local_capacity_as_of=at)
    )
    assert list(candidate)[-3:] == ["local_area", "local_available_beds", "local_capacity_as_of"]
    assert candidate["local_capacity_as_of"] == "2026-02-01T09:00:00+00:00"  # isoformat, as before

    [schedule] = [ScheduleView.of(s) for s in p.schedules_as_of(dt.date(2026, 2, 3)) if s.rule.interval_days == 56]
    assert list(jsonable(schedule)) == ["review_type", "interval_days", "due_date", "last_review_date", "policy"]
