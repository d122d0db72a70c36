"""Who may make a placement chargeable (docs/authority.md), with the in-memory register: a
provider's report waits for the commissioner's agreement, implausible rates wait for its
confirmation, and what arrives meanwhile is kept, not lost."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from homeward.contracts.events import (
    AmountHeld,
    PatientRepatriated,
    PlacementAgreed,
    PlacementAwaitingAgreement,
    PlacementClosed,
    PlacementRateChanged,
    PlacementRegistered,
    RateConfirmed,
)
from homeward.kit.consumer import Rejected
from homeward.placements.domain import AGREED, AWAITING_AGREEMENT, RATE_HELD, Refused, may_act_for, register
from placements_support import (
    FAR_PROVIDER,
    HOME,
    LOCAL_PROVIDER,
    Register,
    at,
    default_policy,
    ended,
    event,
    local_made,
    placement_made,
    rate_changed,
    reference,
)

D = dt.date.fromisoformat


def agreed(pid: str, rate: int = 54500, commissioner: str = HOME) -> PlacementAgreed:
    return PlacementAgreed(placement_id=pid, commissioner=commissioner, daily_rate_pence=rate)


def confirmed(pid: str, rate: int, effective: str) -> RateConfirmed:
    return RateConfirmed(placement_id=pid, commissioner=HOME, daily_rate_pence=rate, effective_date=D(effective))


def _registered(rate: int = 54500, *, agreed: bool, held: bool = False) -> Any:
    return register(
        placement_made("PLC-1", rate=rate),
        patient_ref="pt_" + "0" * 32,
        commissioner_area=HOME,
        site_area="QAB",
        event_id="evt-made",
        event_time=at("2026-01-05"),
        policy=default_policy(),
        reported_by=HOME if agreed else FAR_PROVIDER,
        agreed=agreed,
        rate_held=held,
    )


def test_the_aggregate_is_chargeable_only_when_agreed_at_a_rate_in_force() -> None:
    reported = _registered(agreed=False)
    assert (reported.status, reported.chargeable) == (AWAITING_AGREEMENT, False)
    with pytest.raises(Refused):
        reported.agree(HOME, "evt-agree", HOME, 50000)  # another price
    with pytest.raises(Refused):
        reported.agree(HOME, "evt-agree", "05R", 54500)  # another commissioner
    assert reported.agree(HOME, "evt-agree", HOME, 54500) is True
    assert reported.agree(HOME, "evt-again", HOME, 54500) is False
    assert (reported.status, reported.chargeable, reported.agreed_event_id) == (AGREED, True, "evt-agree")

    held = _registered(5_450_000, agreed=True, held=True)
    assert (held.status, held.chargeable) == (RATE_HELD, False)
    assert held.registered_payload().daily_rate_pence == 5_450_000  # nothing else in force yet
    with pytest.raises(Refused) as nothing:
        held.confirm_rate(D("2026-01-05"), 54500, HOME)
    assert nothing.value.reason == "nothing-held"
    change = held.confirm_rate(D("2026-01-05"), 5_450_000, HOME)
    assert change is not None and change.entry.confirmed_by == HOME and not change.entry.held
    assert held.chargeable and held.confirm_rate(D("2026-01-05"), 5_450_000, HOME) is None


def test_a_reported_placement_records_that_it_awaits_its_commissioners_agreement() -> None:
    reported = _registered(agreed=False)
    [awaiting] = reported.take_events()
    assert isinstance(awaiting.payload, PlacementAwaitingAgreement)
    assert (awaiting.payload.placement_id, awaiting.payload.commissioner) == (reported.placement_id, HOME)
    assert awaiting.time == reported.registered_at
    assert reported.take_events() == []  # taken once
    assert _registered(agreed=True).take_events() == []


def test_a_held_rate_is_history_not_in_force() -> None:
    p = _registered(agreed=True)
    change = p.change_rate(5_450_000, D("2026-02-01"), "other", "evt-high", at("2026-02-02"), held=True)
    assert change.outcome == "held"
    assert p.rate_on(D("2026-02-10")) == 54500
    # Stating the held figure again neither confirms it nor counts as new.
    again = p.change_rate(5_450_000, D("2026-02-01"), "other", "evt-again", at("2026-02-03"), held=True)
    assert again.outcome == "duplicate"
    # The right figure for the same date stands; the held one stays held.
    fixed = p.change_rate(56000, D("2026-02-01"), "correction", "evt-fix", at("2026-02-04"))
    assert (fixed.outcome, fixed.previous_daily_rate_pence) == ("applied", 54500)
    assert p.rate_on(D("2026-02-10")) == 56000
    assert [e.held for e in p.rates if e.event_id == "evt-high"] == [True]


def test_only_the_commissioner_or_its_configured_lead_may_act_for_it() -> None:
    delegations = {"05R": "05A"}
    assert may_act_for("05R", "05R", delegations)
    assert may_act_for("05A", "05R", delegations)
    assert not may_act_for("05R", "05A", delegations)  # delegation runs one way
    assert not may_act_for("8Z000", "05R", delegations)
    assert not may_act_for(None, "05R", delegations)


async def test_a_commissioners_own_placement_is_charged_at_once() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1"), org=HOME))
    (registered,) = reg.store.of_type(PlacementRegistered)
    assert (registered.asserted_by, registered.principal) == (HOME, f"User:{HOME}")
    assert reg.placement("PLC-1").status == AGREED
    assert reg.store.of_type(PlacementAwaitingAgreement) == []


async def test_a_providers_report_is_registered_but_charged_only_once_the_commissioner_agrees() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1"), org=FAR_PROVIDER))
    assert reg.placement("PLC-1").status == AWAITING_AGREEMENT
    assert reg.store.of_type(PlacementRegistered) == []
    (waiting,) = reg.store.of_type(PlacementAwaitingAgreement)
    assert (waiting.commissioner, waiting.reported_by, waiting.daily_rate_pence) == (HOME, FAR_PROVIDER, 54500)

    # Facts that arrive meanwhile are recorded, and published for the budget to keep until it is charged.
    await reg.send(event(rate_changed("PLC-1", 56000, "2026-02-01"), org=FAR_PROVIDER))
    await reg.send(event(ended("PLC-1", "2026-03-01", "discharged_home"), org=FAR_PROVIDER))
    assert len(reg.store.of_type(PlacementRateChanged)) == 1 and len(reg.store.of_type(PlacementClosed)) == 1

    # Nobody else may agree it: not the provider, not another commissioner.
    for org in (FAR_PROVIDER, "05R"):
        with pytest.raises(Rejected) as refused:
            await reg.send(event(agreed("PLC-1"), org=org))
        assert refused.value.reason == "not-authorised"
    # The commissioner agrees what was reported, not another price.
    with pytest.raises(Rejected) as conflict:
        await reg.send(event(agreed("PLC-1", rate=50000), org=HOME))
    assert conflict.value.reason == "conflict"
    assert reg.store.of_type(PlacementRegistered) == []

    await reg.send(event(agreed("PLC-1"), org=HOME))
    (registered,) = reg.store.of_type(PlacementRegistered)
    assert (registered.daily_rate_pence, registered.asserted_by, registered.principal) == (54500, HOME, "User:05A")
    assert reg.placement("PLC-1").status == AGREED
    await reg.send(event(agreed("PLC-1"), org=HOME))  # agreeing twice changes nothing
    assert len(reg.store.of_type(PlacementRegistered)) == 1


async def test_the_commissioner_stating_a_reported_placement_is_its_agreement() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1"), org=FAR_PROVIDER))
    await reg.send(event(placement_made("PLC-1"), org=HOME))
    assert len(reg.store.of_type(PlacementRegistered)) == 1
    assert reg.placement("PLC-1").agreed_by == HOME


async def test_an_agreement_before_the_report_waits_for_it() -> None:
    reg = Register()
    await reg.send(event(agreed("PLC-1"), org=HOME))
    assert reg.store.of_type(PlacementRegistered) == []
    await reg.send(event(placement_made("PLC-1"), org=FAR_PROVIDER))
    assert len(reg.store.of_type(PlacementRegistered)) == 1
    # What the report says goes out first, then what the agreement that waited for it makes so.
    said = [type(p) for _, p in reg.store.published]
    assert said == [PlacementAwaitingAgreement, PlacementRegistered]


async def test_a_delegated_lead_commissioner_may_agree() -> None:
    reg = Register(delegations={HOME: "05R"})
    await reg.send(event(placement_made("PLC-1"), org=FAR_PROVIDER))
    await reg.send(event(agreed("PLC-1"), org="05R"))
    (registered,) = reg.store.of_type(PlacementRegistered)
    assert registered.asserted_by == "05R"


async def test_an_implausible_starting_rate_is_held_until_the_commissioner_confirms_it() -> None:
    reg = Register()
    # £100m a day (issue 12), stated by the commissioner itself: still held.
    await reg.send(event(placement_made("PLC-1", rate=10_000_000_000), org=HOME))
    assert reg.placement("PLC-1").status == RATE_HELD
    assert reg.store.of_type(PlacementRegistered) == []
    (held,) = reg.store.of_type(AmountHeld)
    assert (held.kind, held.daily_rate_pence, held.upper_pence) == ("daily_rate", 10_000_000_000, 300_000)
    with pytest.raises(Rejected) as refused:
        await reg.send(event(confirmed("PLC-1", 10_000_000_000, "2026-01-05"), org=FAR_PROVIDER))
    assert refused.value.reason == "not-authorised"
    with pytest.raises(Rejected) as nothing:
        await reg.send(event(confirmed("PLC-1", 9_999, "2026-01-05"), org=HOME))
    assert nothing.value.reason == "nothing-held"
    await reg.send(event(confirmed("PLC-1", 10_000_000_000, "2026-01-05"), org=HOME))
    assert len(reg.store.of_type(PlacementRegistered)) == 1
    assert reg.placement("PLC-1").status == AGREED


async def test_an_implausible_rate_change_is_held_not_in_force_and_published_once_confirmed() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1"), org=HOME))
    await reg.send(event(rate_changed("PLC-1", 5_450_000, "2026-02-01"), org=FAR_PROVIDER))
    assert reg.store.of_type(PlacementRateChanged) == []
    assert reg.placement("PLC-1").rate_on(D("2026-02-10")) == 54500
    assert [h.effective_date for h in reg.store.of_type(AmountHeld)] == [D("2026-02-01")]
    # Stating it again does not confirm it.
    await reg.send(event(rate_changed("PLC-1", 5_450_000, "2026-02-01"), org=HOME))
    assert reg.store.of_type(PlacementRateChanged) == []
    await reg.send(event(confirmed("PLC-1", 5_450_000, "2026-02-01"), org=HOME))
    (change,) = reg.store.of_type(PlacementRateChanged)
    assert (change.daily_rate_pence, change.previous_daily_rate_pence, change.asserted_by) == (5_450_000, 54500, HOME)
    assert reg.placement("PLC-1").rate_on(D("2026-02-10")) == 5_450_000


async def test_a_repatriation_is_published_only_between_agreed_placements() -> None:
    reg = Register()
    await reg.send(event(placement_made("PLC-1"), org=HOME))
    await reg.send(event(ended("PLC-1", "2026-02-01", "repatriated", to="PLC-2"), org=HOME))
    await reg.send(event(local_made("PLC-2", start="2026-02-01"), org=LOCAL_PROVIDER))
    assert reg.store.of_type(PatientRepatriated) == []
    await reg.send(event(agreed("PLC-2", rate=40000), org=HOME))
    (move,) = reg.store.of_type(PatientRepatriated)
    assert (move.from_placement_id, move.to_placement_id, move.asserted_by) == ("PLC-1", "PLC-2", HOME)


async def test_a_provider_reports_placements_at_its_own_sites_only() -> None:
    reg = Register(ref=reference(RYG01=HOME))
    # 8Z000 names the local trust's site as its own: the reference data says whose site it is.
    with pytest.raises(Rejected) as refused:
        await reg.send(event(placement_made("PLC-1", site="RYG01", site_area=HOME), org=FAR_PROVIDER))
    assert refused.value.reason == "not-party"
    assert reg.store.placements == {}
    await reg.send(event(local_made("PLC-2"), org=LOCAL_PROVIDER))
    assert reg.placement("PLC-2").status == AWAITING_AGREEMENT


async def test_a_held_starting_rate_replaced_by_a_plausible_one_makes_the_placement_chargeable() -> None:
    reg = Register()
    # Pounds typed as pence: £54,500.00 a day instead of £545.00.
    await reg.send(event(placement_made("PLC-1", rate=5_450_000), org=FAR_PROVIDER))
    await reg.send(event(agreed("PLC-1", rate=5_450_000), org=HOME))
    assert reg.store.of_type(PlacementRegistered) == []
    await reg.send(event(rate_changed("PLC-1", 54500, "2026-01-05", reason="correction"), org=FAR_PROVIDER))
    (registered,) = reg.store.of_type(PlacementRegistered)
    assert (registered.daily_rate_pence, registered.asserted_by, registered.principal) == (54500, HOME, "User:05A")
    assert reg.placement("PLC-1").status == AGREED
