"""Use cases against the unit of work in memory: triage, capacity, placements and waits. Each
event runs through the handler table and is then flushed, as the kit's consumer runs it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from homeward.contracts.events import (
    LocalCapacityChanged,
    LocalCapacityUnavailable,
    ReferralTriaged,
    ReferralWaitBreached,
)
from homeward.contracts.vocab import BedType, OutOfAreaReason, Urgency
from homeward.kit.consumer import Rejected
from homeward.kit.pseudonym import patient_ref
from homeward.kit.reference import Commissioner, ReferenceData, Site
from homeward.referrals.handlers import report_wait_breaches, retry_arrived, settle_capacity, settle_triage
from homeward.referrals.settings import ReferralsSettings

from .factories import (
    KEY,
    NHS_A,
    NHS_B,
    T0,
    FakeUnitOfWork,
    beds,
    from_partner,
    from_placements,
    referral,
    registered,
    withdrawn,
)

H = dt.timedelta(hours=1)


World = FakeUnitOfWork


async def refer(world: World, referral_id: str = "REF-1", commissioner: str = "QWU", **extra: Any) -> None:
    sender = extra.pop("sender", commissioner)
    await world.handle(from_partner(referral(referral_id, commissioner, **extra), sender))


async def report(
    world: World, provider: str, site: str, area: str, available: int, as_of: dt.datetime, **kw: Any
) -> None:
    event = from_partner(beds(provider, site, area, available, as_of, **kw), kw.pop("sender", provider))
    await world.handle(event)


async def place(world: World, *args: Any, **kw: Any) -> None:
    await world.handle(from_placements(registered(*args, **kw)))


async def test_triage_lists_in_area_sites_with_free_beds_best_first() -> None:
    w = World()
    await report(w, "RYG", "RYG01", "QWU", 1, T0)
    await report(w, "RYG", "RYG02", "QWU", 3, T0 - H)
    await report(w, "RJX", "RJX01", "QWU", 0, T0)
    await report(w, "8HA03", "8HA0301", "QHM", 5, T0)
    await refer(w)
    (triaged,) = w.of(ReferralTriaged)
    assert [(o.site, o.available_beds) for o in triaged.local_options] == [("RYG02", 3), ("RYG01", 1)]
    assert triaged.home_area == "QWU"
    assert triaged.patient_ref == patient_ref(NHS_A, KEY)


async def test_triage_uses_the_stated_home_area_over_the_commissioners_area() -> None:
    w = World()
    await report(w, "RYG", "RYG01", "QWU", 2, T0)
    await report(w, "8HA03", "8HA0301", "QHM", 5, T0)
    await refer(w, home_area="QHM")
    (triaged,) = w.of(ReferralTriaged)
    assert [o.site for o in triaged.local_options] == ["8HA0301"]


async def test_commissioner_area_comes_from_reference_data() -> None:
    w = World(reference=ReferenceData(commissioners={"D4U1Y": Commissioner("D4U1Y", "QWU")}))
    await report(w, "RYG", "RYG01", "QWU", 2, T0)
    await refer(w, commissioner="D4U1Y")
    (triaged,) = w.of(ReferralTriaged)
    assert (triaged.home_area, [o.site for o in triaged.local_options]) == ("QWU", ["RYG01"])


async def test_stale_and_equal_time_counts_are_ignored_and_publish_nothing() -> None:
    w = World()
    await report(w, "RYG", "RYG01", "QWU", 2, T0)
    await report(w, "RYG", "RYG01", "QWU", 7, T0 - H)
    await report(w, "RYG", "RYG01", "QWU", 9, T0)
    assert [(c.available_beds, ok) for _, c, ok in w.capacity.reports] == [(2, True), (7, False), (9, False)]
    (changed,) = w.of(LocalCapacityChanged)
    assert (changed.area, changed.available_beds, changed.as_of) == ("QWU", 2, T0)
    await refer(w)
    assert [o.available_beds for o in w.of(ReferralTriaged)[0].local_options] == [2]


async def test_each_accepted_count_publishes_the_area_total() -> None:
    w = World()
    await report(w, "RYG", "RYG01", "QWU", 2, T0)
    await report(w, "RJX", "RJX01", "QWU", 3, T0 + H)
    await report(w, "RYG", "RYG01", "QWU", 0, T0 + 2 * H)
    totals = [(c.available_beds, c.as_of) for c in w.of(LocalCapacityChanged)]
    assert totals == [(2, T0), (5, T0 + H), (3, T0 + 2 * H)]


async def test_a_site_moving_area_republishes_both_areas() -> None:
    w = World()
    await report(w, "RYG", "RYG01", "QWU", 2, T0)
    await report(w, "RYG", "RYG01", "QHM", 2, T0 + H)
    last_two = [(c.area, c.available_beds) for c in w.of(LocalCapacityChanged)][1:]
    assert sorted(last_two) == [("QHM", 2), ("QWU", 0)]


async def test_a_total_another_transaction_is_publishing_is_left_to_the_capacity_job() -> None:
    w = World()
    await report(w, "RYG", "RYG01", "QWU", 2, T0)
    w.capacity.busy.add("QWU")
    await report(w, "RJX", "RJX01", "QWU", 3, T0 + H)
    assert [c.available_beds for c in w.of(LocalCapacityChanged)] == [2]
    assert w.capacity.notes == [("QWU", BedType.PICU)]
    w.capacity.busy.clear()
    assert await w.run(settle_capacity, T0 + 2 * H) == 1
    assert [(c.available_beds, c.as_of) for c in w.of(LocalCapacityChanged)] == [(2, T0), (5, T0 + H)]
    assert await w.run(settle_capacity, T0 + 2 * H) == 0


async def test_a_provider_may_not_report_another_providers_beds() -> None:
    w = World()
    with pytest.raises(Rejected) as exc:
        await report(w, "RYG", "RYG01", "QWU", 2, T0, sender="RJX")
    assert exc.value.reason == "not-party"
    assert w.capacity.held_counts == {}


async def test_a_count_contradicting_the_reference_data_is_refused() -> None:
    w = World(reference=ReferenceData(sites={"RYG01": Site("RYG01", "RYG", "QWU")}))
    with pytest.raises(Rejected) as exc:
        await report(w, "RJX", "RYG01", "QWU", 2, T0)
    assert exc.value.reason == "not-party"
    with pytest.raises(Rejected) as exc:
        await report(w, "RYG", "RYG01", "QHM", 2, T0)
    assert exc.value.reason == "conflict"


async def test_only_the_commissioner_or_a_local_provider_may_refer() -> None:
    w = World(reference=ReferenceData(sites={"RYG01": Site("RYG01", "RYG", "QWU")}))
    with pytest.raises(Rejected) as exc:
        await refer(w, sender="QHM")
    assert exc.value.reason == "not-party"
    await refer(w, "REF-2", sender="RYG")
    assert len(w.of(ReferralTriaged)) == 1


async def test_a_resent_referral_is_a_no_op_and_a_changed_one_is_a_conflict() -> None:
    w = World()
    await refer(w)
    await refer(w)
    assert len(w.of(ReferralTriaged)) == 1
    with pytest.raises(Rejected) as exc:
        await refer(w, urgency="emergency")
    assert exc.value.reason == "conflict"
    with pytest.raises(Rejected) as exc:
        await refer(w, commissioner="QHM")
    assert exc.value.reason == "conflict"


async def test_an_out_of_area_placement_closes_the_referral_and_reports_the_unmet_need() -> None:
    w = World()
    await refer(w)
    await place(w, "PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True, reason="10")
    (gap,) = w.of(LocalCapacityUnavailable)
    assert (gap.referral_id, gap.placement_id, gap.home_area, gap.bed_type.value) == ("REF-1", "PLC-1", "QWU", "picu")
    assert (gap.placed_site, gap.placed_on, gap.out_of_area_reason) == (
        "8HA0301",
        dt.date(2026, 3, 4),
        OutOfAreaReason.NO_LOCAL_BED,
    )
    assert gap.waited_hours == 39
    stored = w.referrals.rows["REF-1"]
    assert not stored.is_open and stored.waited_hours == 39


async def test_an_in_area_placement_closes_the_referral_without_an_unmet_need_signal() -> None:
    w = World()
    await refer(w)
    await place(w, "PLC-1", "REF-1", "QWU", site="RYG01", site_area="QWU", out_of_area=False)
    assert w.of(LocalCapacityUnavailable) == []
    assert not w.referrals.rows["REF-1"].is_open


async def test_an_out_of_area_placement_with_no_reason_given_still_signals_the_gap() -> None:
    w = World()
    await refer(w)
    await place(w, "PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True)
    (gap,) = w.of(LocalCapacityUnavailable)
    assert gap.out_of_area_reason is None


async def test_a_placement_without_a_referral_is_ignored() -> None:
    w = World()
    await refer(w)
    await place(w, "PLC-1", None, "QWU", site="8HA0301", site_area="QHM", out_of_area=True, reason="10")
    assert w.of(LocalCapacityUnavailable) == [] and w.lot == []
    assert w.referrals.rows["REF-1"].is_open


async def test_a_placement_before_its_referral_is_parked_and_applied_when_the_referral_arrives() -> None:
    w = World()
    await place(w, "PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True, reason="14")
    (parked,) = w.parked()
    assert (parked.awaiting, parked.reason, parked.event.data.placement_id) == (
        "referral:REF-1",
        "referral-unknown",
        "PLC-1",
    )
    assert w.of(LocalCapacityUnavailable) == []
    await refer(w)
    assert len(w.of(ReferralTriaged)) == 1
    (gap,) = w.of(LocalCapacityUnavailable)
    assert gap.out_of_area_reason is OutOfAreaReason.PATIENT_CHOICE
    assert w.parked() == [] and [p.event.data.placement_id for p in w.parked("applied")] == ["PLC-1"]
    assert not w.referrals.rows["REF-1"].is_open


async def test_a_placement_parked_while_its_referral_was_being_handled_is_applied_later() -> None:
    w = World()
    await refer(w)  # the referral commits...
    event = from_placements(registered("PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True))
    await w.park(
        event, awaiting="referral:REF-1", reason="referral-unknown"
    )  # ...while the placement, blind to it, parks
    assert w.referrals.rows["REF-1"].is_open
    assert await w.run(retry_arrived) == 1
    assert not w.referrals.rows["REF-1"].is_open and w.parked() == []
    assert [g.placement_id for g in w.of(LocalCapacityUnavailable)] == ["PLC-1"]
    assert await w.run(retry_arrived) == 0


async def test_a_parked_placement_of_another_commissioner_is_refused_when_its_referral_arrives() -> None:
    w = World()
    await place(w, "PLC-9", "REF-1", "QHM", site="8HA0301", site_area="QHM", out_of_area=True, reason="10")
    await refer(w)
    assert w.referrals.rows["REF-1"].is_open
    (refused,) = w.parked("rejected")
    assert refused.resolution is not None and refused.resolution.startswith("not-party")
    assert await w.run(retry_arrived) == 0
    assert w.of(LocalCapacityUnavailable) == []


async def test_a_placement_for_another_commissioners_referral_is_refused() -> None:
    w = World()
    await refer(w)
    with pytest.raises(Rejected) as exc:
        await place(w, "PLC-1", "REF-1", "QHM", site="8HA0301", site_area="QHM", out_of_area=True, reason="10")
    assert exc.value.reason == "not-party"
    assert w.referrals.rows["REF-1"].is_open


async def test_a_second_placement_for_a_closed_referral_changes_nothing() -> None:
    w = World()
    await refer(w)
    await place(w, "PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True, reason="10")
    await place(w, "PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True, reason="10")
    await place(w, "PLC-2", "REF-1", "QWU", site="9XY0101", site_area="QHM", out_of_area=True, reason="10")
    assert len(w.of(LocalCapacityUnavailable)) == 1
    placement = w.referrals.rows["REF-1"].placement
    assert placement is not None and placement.placement_id == "PLC-1"


async def _breaches(w: World, at: dt.datetime, thresholds: dict[Urgency, list[int]] | None = None) -> int:
    limits = thresholds or ReferralsSettings().wait_thresholds_hours
    w.config = dataclasses.replace(w.config, wait_thresholds_hours=limits)
    return await w.run(report_wait_breaches, at)


async def test_wait_breaches_are_reported_once_per_threshold_while_the_referral_is_open() -> None:
    w = World()
    await refer(w, "REF-U", urgency="urgent")
    await refer(w, "REF-E", urgency="emergency", nhs_number=NHS_B)
    assert await _breaches(w, T0 + 3 * H) == 0
    assert await _breaches(w, T0 + 4 * H) == 1
    assert await _breaches(w, T0 + 4 * H) == 0
    assert await _breaches(w, T0 + 30 * H) == 2  # emergency 12h and urgent 24h
    reported = sorted((b.referral_id, b.threshold_hours, b.waited_hours) for b in w.of(ReferralWaitBreached))
    assert reported == [("REF-E", 4, 4), ("REF-E", 12, 30), ("REF-U", 24, 30)]
    await place(w, "PLC-1", "REF-U", "QWU", site="RYG01", site_area="QWU", out_of_area=False, start_date="2026-03-03")
    assert await _breaches(w, T0 + 100 * H) == 0  # REF-U placed; REF-E has no threshold beyond 12h


async def test_wait_thresholds_come_from_settings() -> None:
    w = World()
    await refer(w, urgency="routine")
    assert await _breaches(w, T0 + 2 * H, {Urgency.ROUTINE: [1, 2]}) == 2


def test_wait_thresholds_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEWARD_REFERRALS_WAIT_THRESHOLDS_HOURS", '{"emergency": [6, 2, 2], "routine": [200]}')
    settings = ReferralsSettings()
    assert settings.wait_thresholds_hours == {Urgency.EMERGENCY: [2, 6], Urgency.ROUTINE: [200]}
    monkeypatch.setenv("HOMEWARD_REFERRALS_WAIT_THRESHOLDS_HOURS", '{"urgent": [0]}')
    with pytest.raises(ValueError, match="at least 1"):
        ReferralsSettings()


# ------------------------------------------------------------------- triage as of the referral's time


async def refer_at(world: World, at: dt.datetime, referral_id: str = "REF-1", **extra: Any) -> None:
    event = from_partner(referral(referral_id, "QWU", **extra), "QWU", time=at)
    await world.handle(event)


def _final_triage(w: World) -> dict[str, tuple[Any, ...]]:
    """Per referral: the options stored, and the ReferralTriaged no later one supersedes."""
    published = [(i, p) for i, p in w.outbox.items() if isinstance(p, ReferralTriaged)]
    superseded = {p.supersedes for _, p in published}
    standing = {p.referral_id: (i, p) for i, p in published if i not in superseded}
    out = {}
    for rid, row in w.referrals.rows.items():
        event_id, event = standing[rid]
        options = [(o.site, o.available_beds, o.as_of) for o in event.local_options]
        assert options == [(o.site, o.available_beds, o.as_of) for o in row.local_options]
        out[rid] = (row.triage_id, event_id, event.capacity_as_of, tuple(options))
    return out


async def test_triage_uses_the_counts_stated_as_of_the_referrals_time() -> None:
    w = World()
    await report(w, "RYG", "RYG01", "QWU", 2, T0 - H)
    await report(w, "RYG", "RYG01", "QWU", 0, T0 + H)  # taken after the referral: not its capacity
    await report(w, "RJX", "RJX01", "QWU", 4, T0 + 2 * H)  # a site first counted after it
    await refer_at(w, T0)
    (triaged,) = w.of(ReferralTriaged)
    assert [(o.site, o.available_beds) for o in triaged.local_options] == [("RYG01", 2)]
    assert triaged.capacity_as_of == T0 and triaged.supersedes is None


async def test_a_count_for_its_time_arriving_after_the_referral_triages_it_again_as_in_the_other_order() -> None:
    counts = [
        ("RYG", "RYG01", 1, T0 - 2 * H),
        ("RJX", "RJX01", 3, T0 - H),
        ("RYG", "RYG01", 0, T0 - H // 2),  # the bed went: late, and stale against the one after it
        ("RYG", "RYG01", 5, T0 + H),  # after the referral: never its capacity
    ]
    referral_first = World()
    await refer_at(referral_first, T0)
    for provider, site, available, as_of in counts:
        await report(referral_first, provider, site, "QWU", available, as_of)
    counts_first = World()
    for provider, site, available, as_of in reversed(counts):
        await report(counts_first, provider, site, "QWU", available, as_of)
    await refer_at(counts_first, T0)

    assert _final_triage(referral_first) == _final_triage(counts_first)
    (_, _, as_of, options) = _final_triage(counts_first)["REF-1"]
    assert (as_of, options) == (T0, (("RJX01", 3, T0 - H),))
    # The referral handled first was triaged on nothing, then again twice, each naming the one before.
    chain = referral_first.of(ReferralTriaged)
    assert [len(t.local_options) for t in chain] == [0, 1, 2, 1]
    assert [t.supersedes is None for t in chain] == [True, False, False, False]
    assert len(counts_first.of(ReferralTriaged)) == 1


async def test_a_count_handled_at_the_same_moment_as_a_referral_is_left_to_the_capacity_job() -> None:
    w = World()
    await refer_at(w, T0)
    w.capacity.busy.add("QWU")
    await report(w, "RYG", "RYG01", "QWU", 2, T0 - H)
    assert [len(t.local_options) for t in w.of(ReferralTriaged)] == [0]
    assert w.capacity.triage_notes == [("QWU", BedType.PICU, T0 - H)]
    w.capacity.busy.clear()
    assert await w.run(settle_triage) == 1
    assert [len(t.local_options) for t in w.of(ReferralTriaged)] == [0, 1]
    assert await w.run(settle_triage) == 0


# ------------------------------------------------------------------------------------- withdrawal


async def withdraw(w: World, at: dt.datetime, referral_id: str = "REF-1", sender: str = "QWU", **kw: Any) -> None:
    event = from_partner(withdrawn(referral_id, kw.pop("commissioner", "QWU"), at, **kw), sender)
    await w.handle(event)


async def test_a_withdrawn_referral_stops_waiting_and_is_not_reported_again() -> None:
    w = World()
    await refer(w, urgency="emergency")
    assert await _breaches(w, T0 + 5 * H) == 1  # 4h
    await withdraw(w, T0 + 6 * H)
    row = w.referrals.rows["REF-1"]
    assert row.status == "withdrawn" and not row.is_open
    assert await _breaches(w, T0 + 30 * H) == 0  # the 12h threshold came after the withdrawal


async def test_a_withdrawal_before_its_referral_is_parked_and_the_earliest_stands_in_any_order() -> None:
    finals = []
    for order in ([T0 + 9 * H, T0 + 2 * H], [T0 + 2 * H, T0 + 9 * H]):
        w = World()
        for at in order:
            await withdraw(w, at)
        await refer(w, urgency="emergency")
        row = w.referrals.rows["REF-1"]
        assert row.withdrawal is not None
        finals.append((row.status, row.withdrawal.withdrawn_at))
        assert await _breaches(w, T0 + 30 * H) == 0  # withdrawn 2 hours in: before the 4h threshold
    assert finals == [("withdrawn", T0 + 2 * H)] * 2


async def test_a_placement_answering_a_withdrawn_referral_still_counts_in_either_order() -> None:
    finals = []
    for placement_first in (True, False):
        w = World()
        await refer(w)
        steps = [
            lambda w=w: place(
                w, "PLC-1", "REF-1", "QWU", site="8HA0301", site_area="QHM", out_of_area=True, reason="10"
            ),
            lambda w=w: withdraw(w, T0 + H),
        ]
        for step in steps if placement_first else reversed(steps):
            await step()
        row = w.referrals.rows["REF-1"]
        assert row.withdrawal is not None and row.placement is not None
        finals.append((row.status, row.withdrawal.withdrawn_at, len(w.of(LocalCapacityUnavailable))))
    assert finals == [("placed", T0 + H, 1)] * 2


async def test_only_the_referrals_commissioner_or_a_local_provider_may_withdraw_it() -> None:
    w = World()
    await refer(w)
    with pytest.raises(Rejected) as exc:
        await withdraw(w, T0 + H, sender="RXX")
    assert exc.value.reason == "not-party"
    with pytest.raises(Rejected) as exc:
        await withdraw(w, T0 + H, sender="QHM", commissioner="QHM")  # its own commissioner code, not the referral's
    assert exc.value.reason == "not-party"
    assert w.referrals.rows["REF-1"].withdrawal is None


async def test_a_parked_withdrawal_of_another_commissioners_referral_is_refused_when_the_referral_arrives() -> None:
    w = World()
    await withdraw(w, T0 + H, sender="QHM", commissioner="QHM")  # QHM may withdraw its own referrals...
    assert [p.awaiting for p in w.parked()] == ["referral:REF-1"]
    await refer(w)  # ...but REF-1 turns out to be QWU's
    (refused,) = w.parked("rejected")
    assert refused.resolution == "not-party: referral REF-1 belongs to another commissioner"
    assert w.referrals.rows["REF-1"].withdrawal is None and w.referrals.rows["REF-1"].is_open
