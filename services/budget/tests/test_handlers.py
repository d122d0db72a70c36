"""Use-case rules with the in-memory fakes: authorisation, conflicts, parking and replays."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from homeward.budget.domain.locks import LockKey, commissioner_keys, invoice_key, placement_key
from homeward.budget.domain.position import position
from homeward.budget.domain.records import InvoiceStatus
from homeward.budget.domain.streams import saving_stream_id
from homeward.budget.handlers import (
    accrue_stream,
    allocate,
    change_rate,
    close_placement,
    confirm_invoice,
    correct_repatriation,
    receive_invoice,
    record_repatriation,
    register_placement,
)
from homeward.budget.ports import Config
from homeward.contracts import new_event, partner_source
from homeward.contracts.events import (
    AmountHeld,
    BudgetThresholdBreached,
    InvoiceConfirmed,
    InvoiceVarianceFound,
    RepatriationCorrected,
)
from homeward.contracts.plausibility import load_bounds
from homeward.kit.consumer import Rejected

from .fakes import (
    Harness,
    allocated,
    closed,
    from_partner,
    from_placements,
    invoice,
    rate_changed,
    registered,
    repatriated,
)

D = dt.date


async def test_allocation_is_accepted_from_the_commissioner_or_its_delegated_lead_only() -> None:
    h = Harness(D(2026, 4, 1), Config(delegations={"05A": "05H"}))
    await h.handle(allocate, from_partner(allocated("05A", 1_000), "05A", h.today))
    await h.handle(allocate, from_partner(allocated("05A", 2_000, allocation_id="ALLOC-2"), "05H", h.today))
    # Naming yourself as the source of the money gives no right to move it (issue 12: 8Z000 added £10bn).
    forged = allocated("05A", 5_000, allocation_id="ALLOC-3").model_copy(update={"source_organisation": "8Z000"})
    for sender, payload in (("8Z000", forged), ("05R", allocated("05A", 5_000, allocation_id="ALLOC-4"))):
        with pytest.raises(Rejected) as refused:
            await h.handle(allocate, from_partner(payload, sender, h.today))
        assert refused.value.reason == "not-authorised"
    # 05H leads for 05A, not the other way round.
    with pytest.raises(Rejected):
        await h.handle(allocate, from_partner(allocated("05H", 7_000, allocation_id="ALLOC-5"), "05A", h.today))
    assert position(h.repo.book.accounts, "05A", "2026-27").total.allocated == 3_000
    assert {(t.asserted_by, t.principal) for t in h.repo.book.transfers.values()} == {
        ("05A", "User:05A"),
        ("05H", "User:05H"),
    }


async def test_a_revised_allocation_posts_the_difference_and_an_old_revision_replayed_changes_nothing() -> None:
    h = Harness(D(2026, 4, 1))
    first = from_partner(allocated("05A", 10_000), "05A", h.today)
    await h.handle(allocate, first)
    await h.handle(allocate, from_partner(allocated("05A", 12_500), "05A", h.today))
    await h.handle(allocate, first)
    assert position(h.repo.book.accounts, "05A", "2026-27").total.allocated == 12_500
    assert [t.purpose for t in h.repo.book.transfers.values()] == ["allocation", "allocation-revision"]
    with pytest.raises(Rejected) as conflict:
        await h.handle(allocate, from_partner(allocated("05A", 1, fy="2027-28"), "05A", h.today))
    assert conflict.value.reason == "conflict"


async def test_allocation_with_an_impossible_financial_year_is_rejected() -> None:
    h = Harness(D(2026, 4, 1))
    with pytest.raises(Rejected) as refused:
        await h.handle(allocate, from_partner(allocated("05A", 1, fy="2026-28"), "05A", h.today))
    assert refused.value.reason == "invalid-financial-year"


async def test_rate_change_and_closure_before_registration_are_parked_then_applied() -> None:
    h = Harness(D(2026, 5, 1))
    await h.handle(change_rate, from_placements(rate_changed("P1", D(2026, 4, 11), 2000), h.today))
    await h.handle(close_placement, from_placements(closed("P1", D(2026, 4, 21), D(2026, 4, 1)), h.today))
    assert h.repo.book.transfers == {}
    assert [(awaiting, e.type) for awaiting, e in h.parked] == [
        ("placement:P1", "homeward.PlacementRateChanged.v1"),
        ("placement:P1", "homeward.PlacementClosed.v1"),
    ]
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=1000), h.today))
    assert h.parked == []
    # 10 nights at £10 and 10 at £20, committed until the accrual job posts them.
    assert position(h.repo.book.accounts, "05A", "2026-27").total.committed == 10 * 1000 + 10 * 2000


async def test_events_parked_for_a_placement_move_its_thresholds_once_after_all_of_them() -> None:
    """A rate change that alone would breach the budget, and the closure that ends the stay ten
    days later, both parked: the registration applies them (oldest fact first) and checks the
    thresholds once, on where they leave the forecast, so nobody is alerted about a moment that
    never was. The same two events in order, with the placement known, do alert."""
    allocation = from_partner(allocated("05A", 100_000), "05A", D(2026, 4, 1))
    placement = registered("P1", start=D(2026, 4, 1), rate=100)
    change = rate_changed("P1", D(2026, 4, 11), 1_000)
    closure = closed("P1", D(2026, 4, 21), D(2026, 4, 1))

    late = Harness(D(2026, 5, 1), Config(thresholds_percent=(90, 100), rate_bounds={}))
    await late.handle(allocate, allocation)
    await late.handle(change_rate, from_placements(change, D(2026, 4, 12), id="change"))
    await late.handle(close_placement, from_placements(closure, D(2026, 4, 22), id="closure"))
    await late.handle(register_placement, from_placements(placement, D(2026, 4, 25), id="registered"))
    assert late.parked == []
    assert position(late.repo.book.accounts, "05A", "2026-27").total.forecast_outturn == 10 * 100 + 10 * 1_000
    assert late.outbox.of(BudgetThresholdBreached) == []

    known = Harness(D(2026, 5, 1), Config(thresholds_percent=(90, 100), rate_bounds={}))
    await known.handle(allocate, allocation)
    await known.handle(register_placement, from_placements(placement, D(2026, 4, 1), id="registered"))
    await known.handle(change_rate, from_placements(change, D(2026, 4, 12), id="change"))
    await known.handle(close_placement, from_placements(closure, D(2026, 4, 22), id="closure"))
    assert position(known.repo.book.accounts, "05A", "2026-27").total.forecast_outturn == 10 * 100 + 10 * 1_000
    assert {a.threshold_percent for a in known.outbox.of(BudgetThresholdBreached)} == {90, 100}


async def test_a_partners_own_rate_change_is_left_to_placements_to_republish() -> None:
    h = Harness(D(2026, 4, 2))
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=1000), h.today))
    before = len(h.repo.book.transfers)
    raw = new_event(rate_changed("P1", D(2026, 4, 1), 9999), source=partner_source("8Z001"))
    await h.handle(change_rate, raw)
    assert len(h.repo.book.transfers) == before


async def test_registering_the_same_placement_with_other_terms_is_a_conflict() -> None:
    h = Harness(D(2026, 4, 2))
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=1000), h.today))
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=1000), h.today))
    with pytest.raises(Rejected) as conflict:
        await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=1001), h.today))
    assert conflict.value.reason == "conflict"


async def test_invoice_only_from_its_provider_and_for_its_placement() -> None:
    h = Harness(D(2026, 5, 1))
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=1000), h.today))
    claim = invoice("INV-1", "P1", D(2026, 4, 1), D(2026, 4, 30), 30_000)
    with pytest.raises(Rejected) as wrong_sender:
        await h.handle(receive_invoice, from_partner(claim, "05A", h.today))
    assert wrong_sender.value.reason == "not-party"
    other = invoice("INV-2", "P1", D(2026, 4, 1), D(2026, 4, 30), 30_000, provider="8Z999")
    with pytest.raises(Rejected) as wrong_provider:
        await h.handle(receive_invoice, from_partner(other, "8Z999", h.today))
    assert wrong_provider.value.reason == "not-party"


async def test_an_invoice_for_an_unknown_placement_is_parked_and_matched_when_it_arrives() -> None:
    h = Harness(D(2026, 5, 1))
    claim = invoice("INV-1", "P1", D(2026, 4, 1), D(2026, 4, 30), 90_000)
    await h.handle(receive_invoice, from_partner(claim, "8Z001", h.today))
    assert h.repo.invoices[("8Z001", "INV-1")].status is InvoiceStatus.PARKED
    assert h.outbox.events == {}
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=1000), h.today))
    matched = h.repo.invoices[("8Z001", "INV-1")]
    assert (matched.status, matched.accrued, matched.variance) == (InvoiceStatus.MATCHED, 30_000, 60_000)
    assert [a.invoice_id for a in h.outbox.of(InvoiceVarianceFound)] == ["INV-1"]


async def test_a_back_dated_rate_change_that_explains_an_invoice_raises_no_new_alert() -> None:
    h = Harness(D(2026, 5, 1))
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=10_000), h.today))
    claim = invoice("INV-1", "P1", D(2026, 4, 1), D(2026, 4, 30), 360_000)  # £12,000 a night claimed
    await h.handle(receive_invoice, from_partner(claim, "8Z001", h.today))
    assert len(h.outbox.of(InvoiceVarianceFound)) == 1
    await h.handle(change_rate, from_placements(rate_changed("P1", D(2026, 4, 1), 12_000), h.today))
    assert h.repo.invoices[("8Z001", "INV-1")].variance == 0
    assert len(h.outbox.of(InvoiceVarianceFound)) == 1


async def test_each_use_case_locks_its_placement_and_every_commissioner_it_posts_to() -> None:
    h = Harness(D(2026, 5, 1))
    pooled = registered("P1", start=D(2026, 4, 1), rate=1000, funding=[("05A", 5_000), ("05H", 5_000)])
    stream_locks = {placement_key("P1"), *commissioner_keys(["05A", "05H"])}

    async def locks_of(use_case: Any, *args: Any) -> frozenset[LockKey]:
        h.repo.locked.clear()
        await (h.accrue(*args) if use_case is accrue_stream else h.handle(use_case, *args))
        return h.repo.held()

    assert await locks_of(register_placement, from_placements(pooled, h.today)) == stream_locks
    # Rate changes and closures name only the placement: its funders come from the stream.
    assert await locks_of(change_rate, from_placements(rate_changed("P1", D(2026, 4, 11), 2000), h.today)) == (
        stream_locks
    )
    assert await locks_of(close_placement, from_placements(closed("P1", D(2026, 6, 1), D(2026, 4, 1)), h.today)) == (
        stream_locks
    )
    assert await locks_of(accrue_stream, "placement:P1") == stream_locks
    # An unknown placement: only its key, which orders the parking against its registration.
    assert await locks_of(change_rate, from_placements(rate_changed("P2", D(2026, 4, 11), 2000), h.today)) == {
        placement_key("P2")
    }
    # An invoice posts nothing to any commissioner's ledger.
    claim = invoice("INV-1", "P1", D(2026, 4, 1), D(2026, 4, 30), 30_000)
    assert await locks_of(receive_invoice, from_partner(claim, "8Z001", h.today)) == {
        placement_key("P1"),
        invoice_key("8Z001", "INV-1"),
    }
    assert await locks_of(allocate, from_partner(allocated("05R", 1_000), "05R", h.today)) == commissioner_keys(["05R"])


# ------------------------------------------------------------------ authority (docs/authority.md)


def _bounded() -> Config:
    return Config(rate_bounds=load_bounds())


def _confirmation(claim: Any, amount: int | None = None) -> InvoiceConfirmed:
    return InvoiceConfirmed(
        invoice_id=claim.invoice_id,
        provider=claim.provider,
        commissioner=claim.commissioner,
        placement_id=claim.placement_id,
        amount_pence=claim.amount_pence if amount is None else amount,
    )


async def test_an_implausible_invoice_is_held_and_matched_once_the_commissioner_confirms_it() -> None:
    h = Harness(D(2026, 5, 1), _bounded())
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=54_500), h.today))
    # Pounds typed as pence: £54,500 a night for an adult acute bed.
    claim = invoice("INV-1", "P1", D(2026, 4, 1), D(2026, 4, 30), 30 * 5_450_000)
    await h.handle(receive_invoice, from_partner(claim, "8Z001", h.today))
    held = h.repo.invoices[("8Z001", "INV-1")]
    assert (held.status, held.accrued) == (InvoiceStatus.HELD, None)
    [alert] = h.outbox.of(AmountHeld)
    assert (alert.kind, alert.daily_rate_pence, alert.upper_pence, alert.commissioner) == (
        "invoice",
        5_450_000,
        300_000,
        "05A",
    )
    assert h.outbox.of(InvoiceVarianceFound) == []
    # Only the commissioner confirms, and only the amount that was held.
    for sender, confirmation, reason in (
        ("8Z001", _confirmation(claim), "not-authorised"),
        ("05A", _confirmation(claim, amount=1), "conflict"),
    ):
        with pytest.raises(Rejected) as refused:
            await h.handle(confirm_invoice, from_partner(confirmation, sender, h.today))
        assert refused.value.reason == reason
    assert h.repo.invoices[("8Z001", "INV-1")].status is InvoiceStatus.HELD
    await h.handle(confirm_invoice, from_partner(_confirmation(claim), "05A", h.today))
    matched = h.repo.invoices[("8Z001", "INV-1")]
    assert (matched.status, matched.confirmed_by, matched.accrued) == (InvoiceStatus.MATCHED, "05A", 30 * 54_500)
    assert len(h.outbox.of(InvoiceVarianceFound)) == 1


async def test_a_plausible_invoice_is_matched_at_once_and_a_parked_one_is_checked_on_arrival() -> None:
    h = Harness(D(2026, 5, 1), _bounded())
    high = invoice("INV-HIGH", "P1", D(2026, 4, 1), D(2026, 4, 30), 30 * 300_001)  # a penny over £3,000 a night
    await h.handle(receive_invoice, from_partner(high, "8Z001", h.today))
    assert h.repo.invoices[("8Z001", "INV-HIGH")].status is InvoiceStatus.PARKED
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=54_500), h.today))
    assert h.repo.invoices[("8Z001", "INV-HIGH")].status is InvoiceStatus.HELD
    for invoice_id, nightly in (("INV-OK", 54_500), ("INV-TOP", 300_000), ("INV-LOW", 9_000)):
        # A low invoice costs nothing more: the variance check, not a hold, deals with it.
        claim = invoice(invoice_id, "P1", D(2026, 4, 1), D(2026, 4, 30), 30 * nightly)
        await h.handle(receive_invoice, from_partner(claim, "8Z001", h.today))
        assert h.repo.invoices[("8Z001", invoice_id)].status is InvoiceStatus.MATCHED, invoice_id
    assert [a.invoice_id for a in h.outbox.of(AmountHeld)] == ["INV-HIGH"]


async def test_an_invoice_judged_before_the_discharge_is_known_is_never_held_for_it() -> None:
    h = Harness(D(2026, 5, 10), _bounded())
    await h.handle(register_placement, from_placements(registered("P1", start=D(2026, 4, 1), rate=54_500), h.today))
    # The stay ended on 4 April, but the invoice for its 3 nights arrives before the closure.
    claim = invoice("INV-4", "P1", D(2026, 4, 1), D(2026, 4, 30), 3 * 54_500)
    await h.handle(receive_invoice, from_partner(claim, "8Z001", h.today))
    await h.handle(close_placement, from_placements(closed("P1", D(2026, 4, 4), D(2026, 4, 1)), h.today))
    assert h.repo.invoices[("8Z001", "INV-4")].status is InvoiceStatus.MATCHED
    assert h.outbox.of(AmountHeld) == []


async def test_every_transfer_records_who_asserted_it() -> None:
    h = Harness(D(2026, 5, 1))
    agreed = registered("P1", start=D(2026, 4, 1), rate=1000).model_copy(
        update={"asserted_by": "05A", "principal": "User:05A"}
    )
    await h.handle(register_placement, from_placements(agreed, h.today))
    await h.accrue("placement:P1")
    who = {(t.purpose, t.asserted_by, t.principal) for t in h.repo.book.transfers.values()}
    assert ("accrual", "05A", "service:budget") in who
    assert {p for p, _, _ in who} >= {"commitment", "accrual"}
    assert all(by == "05A" for _, by, _ in who)
    assert {pr for p, _, pr in who if p != "accrual"} == {"User:05A"}


async def test_an_invoice_is_judged_per_night_of_the_stay_it_covers() -> None:
    h = Harness(D(2026, 6, 1), _bounded())
    stay = registered("P1", start=D(2026, 4, 28), rate=54_500)
    await h.handle(register_placement, from_placements(stay, h.today))
    await h.handle(close_placement, from_placements(closed("P1", D(2026, 5, 3), D(2026, 4, 28)), h.today))
    # April's invoice covers 3 nights (28-30 April) and May's 2 (1-2 May), not whole months.
    for invoice_id, first, last, nights in (
        ("INV-4", D(2026, 4, 1), D(2026, 4, 30), 3),
        ("INV-5", D(2026, 5, 1), D(2026, 5, 31), 2),
    ):
        claim = invoice(invoice_id, "P1", first, last, nights * 54_500)
        await h.handle(receive_invoice, from_partner(claim, "8Z001", h.today))
        assert h.repo.invoices[("8Z001", invoice_id)].status is InvoiceStatus.MATCHED, invoice_id
    assert h.outbox.of(AmountHeld) == []


async def test_what_a_parked_event_posts_is_asserted_by_whoever_asserted_that_event() -> None:
    h = Harness(D(2026, 5, 1))
    change = rate_changed("P1", D(2026, 4, 15), 2000).model_copy(
        update={"asserted_by": "8Z001", "principal": "User:8Z001"}
    )
    await h.handle(change_rate, from_placements(change, h.today, id="evt-rate"))
    agreed = registered("P1", start=D(2026, 4, 1), rate=1000).model_copy(
        update={"asserted_by": "05A", "principal": "User:05A"}
    )
    await h.handle(register_placement, from_placements(agreed, h.today, id="evt-reg"))
    by_cause = {(t.cause, t.asserted_by, t.principal) for t in h.repo.book.transfers.values()}
    assert by_cause == {("evt-reg", "05A", "User:05A"), ("evt-rate", "8Z001", "User:8Z001")}


async def test_a_repatriation_correction_restates_the_saving_from_the_day_home() -> None:
    h = Harness(D(2026, 4, 11))
    move = repatriated("P0", on=D(2026, 4, 1), from_rate=62000, to_rate=35000)
    await h.handle(record_repatriation, from_placements(move, D(2026, 4, 1), id="move"))
    await h.accrue(saving_stream_id("P0"))
    savings = position(h.repo.book.accounts, "05A", "2026-27").total
    assert (savings.savings_year, savings.savings_to_date) == (365 * 27000, 10 * 27000)
    # The distant bed's rate on the last night turned out higher: £650, not £620.
    fix = RepatriationCorrected.model_validate(
        {
            **move.model_dump(mode="json"),
            "from_daily_rate_pence": 65000,
            "reason": "rate-changed",
            "corrects_event_id": "move",
            "previous_from_daily_rate_pence": 62000,
            "previous_to_daily_rate_pence": 35000,
        },
        strict=False,
    )
    await h.handle(correct_repatriation, from_placements(fix, D(2026, 4, 11), id="fix"))
    await h.handle(correct_repatriation, from_placements(fix, D(2026, 4, 11), id="fix"))  # replayed: nothing more
    savings = position(h.repo.book.accounts, "05A", "2026-27").total
    assert (savings.savings_year, savings.savings_to_date) == (365 * 30000, 10 * 30000)
    corrections = [t for t in h.repo.book.transfers.values() if t.cause == "fix" and t.purpose == "correction"]
    assert sum(t.amount for t in corrections) == 10 * 3000  # the ten days already realised, dated by the fix
    assert {t.effective_on for t in corrections} == {D(2026, 4, 11)}


async def test_a_correction_of_a_move_the_budget_never_saw_records_the_whole_move() -> None:
    h = Harness(D(2026, 4, 11))
    fix = RepatriationCorrected.model_validate(
        {
            **repatriated("P0", on=D(2026, 4, 1), from_rate=65000, to_rate=35000).model_dump(mode="json"),
            "reason": "rate-changed",
            "corrects_event_id": "move",
            "previous_from_daily_rate_pence": 62000,
            "previous_to_daily_rate_pence": 35000,
        },
        strict=False,
    )
    await h.handle(correct_repatriation, from_placements(fix, D(2026, 4, 11), id="fix"))
    assert position(h.repo.book.accounts, "05A", "2026-27").total.savings_year == 365 * 30000
