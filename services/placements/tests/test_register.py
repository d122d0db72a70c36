"""The register's use cases with an in-memory repository: registration, who may speak,
duplicates and conflicts, out-of-order facts, rates and ends."""

import datetime as dt
import json

import pytest
from homeward.contracts.events import (
    FundingShare,
    PlacementClosed,
    PlacementRateChanged,
    PlacementRegistered,
)
from homeward.contracts.vocab import ReviewType
from homeward.kit.consumer import Rejected
from homeward.kit.pseudonym import patient_ref
from placements_support import (
    FAR_AREA,
    FAR_PROVIDER,
    HOME,
    KEY,
    NHS_A,
    NHS_B,
    Register,
    at,
    ended,
    event,
    local_made,
    placement_made,
    rate_changed,
    review,
)

D = dt.date.fromisoformat


async def test_a_placement_out_of_area_is_registered_and_published_with_a_patient_reference() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1", out_of_area_reason="10", distance_from_home_km=140)))
    (published,) = reg.store.of_type(PlacementRegistered)
    assert published.patient_ref == patient_ref(NHS_A, KEY)
    assert (published.commissioner_area, published.provider_site_area) == (HOME, FAR_AREA)
    assert published.out_of_area and published.inappropriate
    assert published.setting.value == "inpatient"
    assert published.funding == [FundingShare(commissioner=HOME, share_bp=10_000)]
    assert [t.value for t in reg.placement("PLC-1").schedules] == ["oversight_visit"]
    assert reg.placement("PLC-1").schedules[ReviewType.OVERSIGHT_VISIT].due_date == D("2026-03-02")
    assert reg.store.nhs_numbers == {published.patient_ref: NHS_A}
    assert NHS_A not in json.dumps([p.model_dump(mode="json") for _, p in reg.store.published])


async def test_only_reason_ten_out_of_area_is_inappropriate_and_in_area_never_is() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1", out_of_area_reason="14")))
    await reg.send(event(local_made("PLC-2", nhs=NHS_B, out_of_area_reason="10")))
    first, second = reg.store.of_type(PlacementRegistered)
    assert (first.out_of_area, first.inappropriate) == (True, False)
    assert (second.out_of_area, second.inappropriate) == (False, False)
    assert reg.placement("PLC-2").schedules == {}


async def test_pooled_funding_is_published_as_stated_and_a_funder_may_state_the_placement() -> None:
    reg = Register()
    funding = [{"commissioner": HOME, "share_bp": 5000}, {"commissioner": "05R", "share_bp": 5000}]
    await reg.send(event(placement_made("PLC-1", funding=funding), org="05R"))
    # A co-funder's report waits for the responsible commissioner, who agrees by stating it too.
    assert reg.store.of_type(PlacementRegistered) == []
    await reg.send(event(placement_made("PLC-1", funding=funding), org=HOME))
    (published,) = reg.store.of_type(PlacementRegistered)
    assert [(f.commissioner, f.share_bp) for f in published.funding] == [(HOME, 5000), ("05R", 5000)]


async def test_an_organisation_not_party_to_a_placement_may_not_state_it() -> None:
    reg = Register()
    with pytest.raises(Rejected) as caught:
        await reg.send(event(placement_made("PLC-1"), org="RX1"))
    assert caught.value.reason == "not-party"
    assert reg.store.placements == {} and reg.store.published == []


async def test_the_same_placement_stated_again_by_the_other_party_changes_nothing() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1"), org=HOME))
    await reg.send(event(placement_made("PLC-1"), org=FAR_PROVIDER))
    assert len(reg.store.of_type(PlacementRegistered)) == 1


async def test_a_placement_id_stated_again_with_different_facts_is_a_conflict() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    with pytest.raises(Rejected) as caught:
        await reg.send(event(placement_made("PLC-1", rate=60000, nhs=NHS_B)))
    assert caught.value.reason == "conflict"
    assert "daily_rate_pence" in caught.value.message and "patient_ref" in caught.value.message
    assert NHS_B not in caught.value.message
    assert len(reg.store.of_type(PlacementRegistered)) == 1


# ------------------------------------------------------------------ out of order


async def test_a_review_before_its_placement_is_parked_then_applied_when_the_placement_arrives() -> None:
    reg = Register()
    early = event(review("PLC-1", "oversight_visit", "2026-02-20"), org=FAR_PROVIDER, time=at("2026-02-20"))
    await reg.send(early)
    assert list(reg.store.parked) == [early.id]
    assert reg.store.placements == {}
    await reg.send(event(placement_made("PLC-1")))
    assert reg.placement("PLC-1").schedules[ReviewType.OVERSIGHT_VISIT].due_date == D("2026-04-17")
    assert reg.store.resolutions[early.id][0] == "applied"


async def test_parked_rate_changes_are_applied_in_event_time_order() -> None:
    reg = Register()
    second = event(rate_changed("PLC-1", 60000, "2026-03-01"), time=at("2026-03-01"))
    first = event(rate_changed("PLC-1", 57000, "2026-02-01"), time=at("2026-02-01"))
    await reg.send(second)
    await reg.send(first)
    await reg.send(event(placement_made("PLC-1")))
    changes = reg.store.of_type(PlacementRateChanged)
    assert [(c.daily_rate_pence, c.previous_daily_rate_pence) for c in changes] == [(57000, 54500), (60000, 57000)]
    assert reg.placement("PLC-1").rate_on(D("2026-03-15")) == 60000


async def test_a_parked_event_from_an_organisation_not_party_is_dead_lettered_when_the_placement_arrives() -> None:
    reg = Register()
    stranger = event(ended("PLC-1", "2026-02-01", "discharged_home"), org="RX1")
    await reg.send(stranger)
    await reg.send(event(placement_made("PLC-1")))
    assert reg.store.dead_letters == [(stranger.id, "not-party", reg.store.dead_letters[0][2])]
    assert reg.store.resolutions[stranger.id][0] == "rejected"
    assert reg.placement("PLC-1").ending is None
    assert len(reg.store.of_type(PlacementRegistered)) == 1
    assert reg.store.of_type(PlacementClosed) == []


# ------------------------------------------------------------------ rates


async def test_a_rate_change_dated_in_the_past_is_applied_and_republished_with_the_previous_rate() -> None:
    reg = Register(today="2026-06-01")
    await reg.send(event(placement_made("PLC-1")))
    await reg.send(event(rate_changed("PLC-1", 56100, "2026-04-01", reason="annual_uplift"), time=at("2026-05-20")))
    (change,) = reg.store.of_type(PlacementRateChanged)
    assert (change.daily_rate_pence, change.previous_daily_rate_pence, change.commissioner) == (56100, 54500, HOME)
    assert change.effective_date == D("2026-04-01")
    p = reg.placement("PLC-1")
    assert (p.rate_on(D("2026-03-31")), p.rate_on(D("2026-04-01"))) == (54500, 56100)


async def test_a_rate_inserted_between_two_others_names_the_rate_it_replaces_on_that_date() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    await reg.send(event(rate_changed("PLC-1", 60000, "2026-03-01"), time=at("2026-03-01")))
    await reg.send(event(rate_changed("PLC-1", 57000, "2026-02-01"), time=at("2026-03-02")))
    late = reg.store.of_type(PlacementRateChanged)[-1]
    assert (late.daily_rate_pence, late.previous_daily_rate_pence) == (57000, 54500)
    p = reg.placement("PLC-1")
    assert [p.rate_on(D(d)) for d in ("2026-01-31", "2026-02-15", "2026-03-15")] == [54500, 57000, 60000]


async def test_the_same_rate_stated_twice_is_published_once_and_an_older_statement_does_not_override() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    await reg.send(event(rate_changed("PLC-1", 60000, "2026-03-01"), time=at("2026-03-05")))
    await reg.send(event(rate_changed("PLC-1", 60000, "2026-03-01"), org=FAR_PROVIDER, time=at("2026-03-06")))
    await reg.send(event(rate_changed("PLC-1", 58000, "2026-03-01"), time=at("2026-03-02")))
    assert [c.daily_rate_pence for c in reg.store.of_type(PlacementRateChanged)] == [60000]
    assert reg.placement("PLC-1").rate_on(D("2026-03-10")) == 60000
    assert len(reg.placement("PLC-1").rates) == 3  # the older statement is kept in the history


@pytest.mark.parametrize(("effective", "reason"), [("2026-01-04", "before-start"), ("2026-02-01", "after-end")])
async def test_a_rate_outside_the_stay_is_rejected_with_a_reason(effective: str, reason: str) -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    await reg.send(event(ended("PLC-1", "2026-02-01", "discharged_home")))
    with pytest.raises(Rejected) as caught:
        await reg.send(event(rate_changed("PLC-1", 1, effective)))
    assert caught.value.reason == reason


# ------------------------------------------------------------------ reviews and ends


async def test_a_completed_review_moves_the_due_date_and_a_review_of_an_unscheduled_type_is_kept() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    await reg.send(event(review("PLC-1", "oversight_visit", "2026-02-27", next_review_due="2026-04-01")))
    await reg.send(event(review("PLC-1", "cpa_review", "2026-02-27")))
    p = reg.placement("PLC-1")
    assert p.schedules[ReviewType.OVERSIGHT_VISIT].due_date == D("2026-04-01")
    assert sorted(r.review_type.value for r in p.reviews) == ["cpa_review", "oversight_visit"]
    assert list(p.schedules) == [ReviewType.OVERSIGHT_VISIT]


async def test_two_different_reviews_of_one_type_on_one_day_are_a_conflict() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    await reg.send(event(review("PLC-1", "oversight_visit", "2026-02-27")))
    await reg.send(event(review("PLC-1", "oversight_visit", "2026-02-27"), org=FAR_PROVIDER))
    with pytest.raises(Rejected) as caught:
        await reg.send(event(review("PLC-1", "oversight_visit", "2026-02-27", outcome="escalate")))
    assert caught.value.reason == "conflict"
    assert len(reg.placement("PLC-1").reviews) == 1


async def test_an_end_closes_the_placement_with_its_length_of_stay_once() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    await reg.send(event(ended("PLC-1", "2026-03-01", "discharged_home")))
    await reg.send(event(ended("PLC-1", "2026-03-01", "discharged_home"), org=FAR_PROVIDER))
    (closed,) = reg.store.of_type(PlacementClosed)
    assert (closed.length_of_stay_nights, closed.out_of_area, closed.end_reason.value) == (55, True, "discharged_home")
    with pytest.raises(Rejected) as caught:
        await reg.send(event(ended("PLC-1", "2026-03-02", "died")))
    assert caught.value.reason == "conflict"


async def test_an_end_before_the_start_is_rejected() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1")))
    with pytest.raises(Rejected) as caught:
        await reg.send(event(ended("PLC-1", "2026-01-04", "discharged_home")))
    assert caught.value.reason == "before-start"
