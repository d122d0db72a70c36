"""Repatriation matching: an out-of-area stay ending in a transfer home, or a stated move home."""

import datetime as dt

import pytest
from homeward.contracts.events import PatientRepatriated, PlacementClosed, PlacementRegistered, RepatriationCorrected
from homeward.kit.consumer import Rejected
from placements_support import (
    FAR_AREA,
    FAR_SITE,
    HOME,
    LOCAL_SITE,
    NHS_B,
    Register,
    at,
    ended,
    event,
    local_made,
    placement_made,
    rate_changed,
)

D = dt.date.fromisoformat


def moves(reg: Register) -> list[tuple[str, str, bool]]:
    return [(r.from_placement_id, r.to_placement_id, r.explicit) for r in reg.store.of_type(PatientRepatriated)]


async def test_a_same_day_transfer_home_is_one_repatriation_with_both_rates_and_sites() -> None:
    reg = Register()
    await reg.send(
        event(
            placement_made(
                "PLC-OUT",
                rate=62000,
                funding=[{"commissioner": HOME, "share_bp": 6000}, {"commissioner": "05R", "share_bp": 4000}],
            )
        )
    )
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    await reg.send(event(local_made("PLC-HOME", start="2026-04-10", rate=41000)))
    (r,) = reg.store.of_type(PatientRepatriated)
    assert (r.from_placement_id, r.to_placement_id, r.explicit) == ("PLC-OUT", "PLC-HOME", False)
    assert (r.from_site, r.to_site) == (FAR_SITE, LOCAL_SITE)
    assert (r.from_daily_rate_pence, r.to_daily_rate_pence) == (62000, 41000)
    assert r.repatriated_on == D("2026-04-10")
    assert [(f.commissioner, f.share_bp) for f in r.funding] == [(HOME, 6000), ("05R", 4000)]


async def test_the_in_area_placement_may_arrive_before_the_transfer_out_ends() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT")))
    await reg.send(event(local_made("PLC-HOME", start="2026-04-12")))
    assert moves(reg) == []
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    assert moves(reg) == [("PLC-OUT", "PLC-HOME", False)]


@pytest.mark.parametrize(("start", "matched"), [("2026-04-24", True), ("2026-04-25", False), ("2026-03-27", True)])
async def test_the_in_area_start_must_fall_within_the_window_of_the_end(start: str, matched: bool) -> None:
    reg = Register(window=14)
    await reg.send(event(placement_made("PLC-OUT", start="2026-03-01")))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    await reg.send(event(local_made("PLC-HOME", start=start)))
    assert moves(reg) == ([("PLC-OUT", "PLC-HOME", False)] if matched else [])


async def test_the_rates_are_those_in_force_at_the_move() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT", rate=62000)))
    await reg.send(event(rate_changed("PLC-OUT", 65000, "2026-04-01"), time=at("2026-04-02")))
    await reg.send(event(local_made("PLC-HOME", start="2026-04-10", rate=41000)))
    await reg.send(event(rate_changed("PLC-HOME", 42000, "2026-05-01"), time=at("2026-04-11")))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    (r,) = reg.store.of_type(PatientRepatriated)
    assert (r.from_daily_rate_pence, r.to_daily_rate_pence) == (65000, 41000)


async def test_a_discharge_or_a_transfer_to_another_distant_unit_is_not_a_repatriation() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT")))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    await reg.send(event(placement_made("PLC-OUT2", start="2026-04-10", site="8Z00002", site_area="QAC")))
    await reg.send(event(placement_made("PLC-X", nhs=NHS_B)))
    await reg.send(event(ended("PLC-X", "2026-04-10", "discharged_home")))
    await reg.send(event(local_made("PLC-XHOME", nhs=NHS_B, start="2026-04-10")))
    assert moves(reg) == []


async def test_another_persons_in_area_placement_does_not_complete_a_transfer() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT")))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    await reg.send(event(local_made("PLC-OTHER", nhs=NHS_B, start="2026-04-10")))
    assert moves(reg) == []


async def test_a_transfer_back_out_after_coming_home_is_not_a_second_repatriation() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-A", start="2026-01-05")))
    await reg.send(event(ended("PLC-A", "2026-02-01", "transfer")))
    await reg.send(event(local_made("PLC-B", start="2026-02-01")))
    await reg.send(event(ended("PLC-B", "2026-02-10", "transfer")))
    await reg.send(event(placement_made("PLC-C", start="2026-02-10", site="8Z00002", site_area="QAC")))
    assert moves(reg) == [("PLC-A", "PLC-B", False)]
    # Home again from the second distant unit: a new move, counted once.
    await reg.send(event(ended("PLC-C", "2026-03-01", "transfer")))
    await reg.send(event(local_made("PLC-D", start="2026-03-01")))
    assert moves(reg) == [("PLC-A", "PLC-B", False), ("PLC-C", "PLC-D", False)]


async def test_an_in_area_stay_that_began_before_the_distant_one_is_not_its_destination() -> None:
    reg = Register()
    await reg.send(event(local_made("PLC-B", start="2026-02-01")))
    await reg.send(event(ended("PLC-B", "2026-02-03", "transfer")))
    await reg.send(event(placement_made("PLC-A", start="2026-02-03")))
    await reg.send(event(ended("PLC-A", "2026-02-05", "transfer")))
    assert moves(reg) == []


async def test_a_stated_repatriation_counts_when_the_named_placement_arrives_later() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT")))
    await reg.send(event(ended("PLC-OUT", "2026-06-01", "repatriated", to="PLC-HOME")))
    assert moves(reg) == []
    await reg.send(event(local_made("PLC-HOME", start="2026-06-03")))
    assert moves(reg) == [("PLC-OUT", "PLC-HOME", True)]
    assert reg.store.of_type(PatientRepatriated)[0].repatriated_on == D("2026-06-03")


async def test_a_stated_repatriation_needs_no_window() -> None:
    reg = Register()
    await reg.send(event(local_made("PLC-HOME", start="2026-09-01")))
    await reg.send(event(placement_made("PLC-OUT")))
    await reg.send(event(ended("PLC-OUT", "2026-06-01", "repatriated", to="PLC-HOME")))
    assert moves(reg) == [("PLC-OUT", "PLC-HOME", True)]


async def test_a_stated_repatriation_naming_another_persons_placement_is_rejected() -> None:
    reg = Register()
    await reg.send(event(local_made("PLC-OTHER", nhs=NHS_B, start="2026-06-01")))
    await reg.send(event(placement_made("PLC-OUT")))
    with pytest.raises(Rejected) as caught:
        await reg.send(event(ended("PLC-OUT", "2026-06-01", "repatriated", to="PLC-OTHER")))
    assert caught.value.reason == "patient-mismatch"
    assert reg.placement("PLC-OUT").ending is None and moves(reg) == []


async def test_a_move_is_never_counted_twice() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT")))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    await reg.send(event(local_made("PLC-HOME", start="2026-04-10")))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))  # stated again by another system
    await reg.send(event(local_made("PLC-HOME2", start="2026-04-11")))  # a second in-area record
    assert moves(reg) == [("PLC-OUT", "PLC-HOME", False)]


async def test_a_transfer_naming_its_destination_matches_only_that_placement() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT")))
    await reg.send(event(local_made("PLC-WRONG", start="2026-04-10")))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer", to="PLC-RIGHT")))
    assert moves(reg) == []
    await reg.send(event(local_made("PLC-RIGHT", start="2026-04-11")))
    assert moves(reg) == [("PLC-OUT", "PLC-RIGHT", False)]


async def test_the_out_of_area_test_uses_the_area_not_the_provider() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT", site_area=FAR_AREA)))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    # The same distant provider, at a site that lies in the home area, is home.
    await reg.send(event(placement_made("PLC-NEAR", start="2026-04-10", site="8Z00009", site_area=HOME)))
    assert moves(reg) == [("PLC-OUT", "PLC-NEAR", False)]


def corrections(reg: Register) -> list[RepatriationCorrected]:
    return [p for _, p in reg.store.published if isinstance(p, RepatriationCorrected)]


def first_moves(reg: Register) -> list[PatientRepatriated]:
    return [p for _, p in reg.store.published if type(p) is PatientRepatriated]


async def test_a_back_dated_rate_change_after_the_move_publishes_a_correction_with_its_reason() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT", rate=62000)))
    await reg.send(event(local_made("PLC-HOME", start="2026-04-10", rate=41000)))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    (move,) = first_moves(reg)
    assert (move.from_daily_rate_pence, move.to_daily_rate_pence) == (62000, 41000)
    # Stated in May, effective from 1 April: the distant bed cost more on its last night.
    await reg.send(event(rate_changed("PLC-OUT", 65000, "2026-04-01"), time=at("2026-05-03")))
    # And the local bed's rate from its first day.
    await reg.send(event(rate_changed("PLC-HOME", 43000, "2026-04-10"), time=at("2026-05-04")))
    # A change after the move changes nothing about it.
    await reg.send(event(rate_changed("PLC-HOME", 44000, "2026-06-01"), time=at("2026-05-05")))
    first, second = corrections(reg)
    move_id = next(i for i, p in reg.store.published if p is move)
    assert (first.reason, first.corrects_event_id) == ("rate-changed", move_id)
    assert (first.previous_from_daily_rate_pence, first.previous_to_daily_rate_pence) == (62000, 41000)
    assert (first.from_daily_rate_pence, first.to_daily_rate_pence) == (65000, 41000)
    assert (second.previous_from_daily_rate_pence, second.previous_to_daily_rate_pence) == (65000, 41000)
    assert (second.from_daily_rate_pence, second.to_daily_rate_pence) == (65000, 43000)
    assert (second.repatriated_on, second.from_placement_id, second.to_placement_id) == (
        D("2026-04-10"),
        "PLC-OUT",
        "PLC-HOME",
    )
    # Dated by when the change was stated; the move itself by the day home.
    times = [reg.store.times[i] for i, p in reg.store.published if isinstance(p, PatientRepatriated)]
    assert times == [dt.datetime(2026, 4, 10, tzinfo=dt.UTC), at("2026-05-03"), at("2026-05-04")]
    assert len(first_moves(reg)) == 1


async def test_a_rate_change_before_the_move_is_published_needs_no_correction() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-OUT", rate=62000)))
    await reg.send(event(ended("PLC-OUT", "2026-04-10", "transfer")))
    await reg.send(event(rate_changed("PLC-OUT", 65000, "2026-04-01"), time=at("2026-04-11")))
    await reg.send(event(local_made("PLC-HOME", start="2026-04-10", rate=41000)))
    (move,) = first_moves(reg)
    assert (move.from_daily_rate_pence, move.to_daily_rate_pence) == (65000, 41000)
    assert corrections(reg) == []


async def test_internal_events_carry_the_time_of_their_fact_not_of_processing() -> None:
    reg = Register()  # its clock stands at the time the events are processed, whatever they say
    made = event(placement_made("PLC-OUT", start="2026-04-01"), time=at("2026-11-22"))  # sent late
    await reg.send(made)
    await reg.send(event(ended("PLC-OUT", "2026-05-10", "discharged_home"), time=at("2026-11-23")))
    registered = next(i for i, p in reg.store.published if isinstance(p, PlacementRegistered))
    closed = next(i for i, p in reg.store.published if isinstance(p, PlacementClosed))
    assert reg.store.times[registered] == dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    assert reg.store.times[closed] == dt.datetime(2026, 5, 10, tzinfo=dt.UTC)
    # Stated ahead of the start, the placement is a fact from when it was stated.
    ahead = Register()
    await ahead.send(event(placement_made("PLC-NEXT", start="2026-04-01"), time=at("2026-03-25")))
    registered = next(i for i, p in ahead.store.published if isinstance(p, PlacementRegistered))
    assert ahead.store.times[registered] == at("2026-03-25")
