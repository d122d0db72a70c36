"""Unit tests of the pure domain: financial years, bed-days, splits, schedules, thresholds, ledger rules."""

from __future__ import annotations

import datetime as dt

import pytest
from homeward.budget.domain.calendar import (
    add_months,
    fy_days,
    fy_label,
    fy_of,
    month_starts_between,
    nights,
    parse_fy,
    split_by_fy,
    twelve_months_from,
)
from homeward.budget.domain.invoices import accrued_for_period, assess
from homeward.budget.domain.ledger import (
    AccountKey,
    AccountKind,
    Book,
    LedgerError,
    LedgerName,
    Transfer,
    TransferKind,
    transfer_id,
)
from homeward.budget.domain.money import Share, funding_shares, split_pence
from homeward.budget.domain.schedule import RateSchedule
from homeward.budget.domain.thresholds import ThresholdState, evaluate

D = dt.date


def test_financial_year_runs_from_1_april_to_31_march() -> None:
    assert fy_of(D(2026, 3, 31)) == 2025
    assert fy_of(D(2026, 4, 1)) == 2026
    assert fy_label(2026) == "2026-27"
    assert fy_label(2099) == "2099-00"
    assert parse_fy("2026-27") == 2026


@pytest.mark.parametrize("label", ["2026-28", "2026/27", "26-27", "2026-2027", "abcd-ef"])
def test_malformed_financial_year_labels_are_refused(label: str) -> None:
    with pytest.raises(ValueError, match="financial year"):
        parse_fy(label)


def test_financial_year_2027_28_has_366_days_for_29_february_2028() -> None:
    assert (fy_days(2026), fy_days(2027), fy_days(2028)) == (365, 366, 365)


def test_bed_days_count_midnights_and_the_discharge_day_is_not_charged() -> None:
    assert nights(D(2026, 1, 5), D(2026, 1, 5)) == 0
    assert nights(D(2026, 1, 5), D(2026, 1, 6)) == 1
    assert nights(D(2028, 2, 28), D(2028, 3, 1)) == 2


def test_a_stay_over_31_march_is_split_by_the_date_of_each_night() -> None:
    assert split_by_fy(D(2026, 3, 30), D(2026, 4, 3)) == [
        (2025, D(2026, 3, 30), D(2026, 4, 1)),
        (2026, D(2026, 4, 1), D(2026, 4, 3)),
    ]
    assert month_starts_between(D(2026, 1, 15), D(2026, 4, 1)) == [D(2026, 2, 1), D(2026, 3, 1)]


def test_twelve_months_from_29_february_ends_on_28_february() -> None:
    assert twelve_months_from(D(2028, 2, 29)) == D(2029, 2, 28)
    assert add_months(D(2026, 1, 31), 1) == D(2026, 2, 28)
    assert (twelve_months_from(D(2027, 6, 1)) - D(2027, 6, 1)).days == 366


def test_split_remainder_goes_to_largest_fraction_then_largest_share_then_ods_order() -> None:
    three = [Share("05A", 3334), Share("05H", 3333), Share("05R", 3333)]
    assert split_pence(54500, three) == {"05A": 18170, "05H": 18165, "05R": 18165}
    # Equal fractions: the larger share wins the penny.
    assert split_pence(1, [Share("05A", 4000), Share("05H", 6000)]) == {"05A": 0, "05H": 1}
    # Equal shares and fractions: the ODS code that sorts first.
    assert split_pence(1, [Share("05R", 5000), Share("05H", 5000)]) == {"05H": 1, "05R": 0}
    assert split_pence(-3, [Share("05A", 5000), Share("05H", 5000)]) == {"05A": -2, "05H": -1}


def test_funding_defaults_to_the_commissioner_and_must_add_up() -> None:
    assert funding_shares([], "05A") == (Share("05A", 10_000),)
    with pytest.raises(ValueError, match="10000"):
        funding_shares([("05A", 5000), ("05H", 4000)], "05A")


def test_rate_schedule_integrates_changes_and_a_change_before_the_start_replaces_the_start_rate() -> None:
    s = RateSchedule.starting(D(2026, 1, 1), 100).with_rate_from(D(2026, 1, 11), 200)
    assert s.cost(D(2026, 1, 1), D(2026, 1, 21)) == 10 * 100 + 10 * 200
    assert s.with_rate_from(D(2025, 12, 1), 150).rates == ((D(2026, 1, 1), 150), (D(2026, 1, 11), 200))
    assert s.funder_cost(D(2026, 1, 1), D(2026, 1, 3), [Share("A", 5000), Share("B", 5000)]) == {"A": 100, "B": 100}


def test_invoice_accrual_counts_only_nights_inside_the_stay() -> None:
    s = RateSchedule.starting(D(2026, 3, 10), 1000)
    assert accrued_for_period(s, None, D(2026, 3, 1), D(2026, 3, 31)) == 22 * 1000
    assert accrued_for_period(s, D(2026, 3, 20), D(2026, 3, 1), D(2026, 3, 31)) == 10 * 1000
    assert accrued_for_period(s, D(2026, 3, 20), D(2026, 4, 1), D(2026, 4, 30)) == 0
    a = assess(invoiced=110_000, accrued=100_000, tolerance_pence=10_000, tolerance_percent=2)
    assert (a.variance, a.tolerance, a.beyond_tolerance) == (10_000, 10_000, False)
    assert assess(110_001, 100_000, 10_000, 2).beyond_tolerance


def test_threshold_fires_once_and_rearms_only_after_falling_back() -> None:
    s0 = ThresholdState()
    s1, fire1 = evaluate(s0, allocated=1000, forecast=900, percent=90)
    s2, fire2 = evaluate(s1, 1000, 950, 90)
    wobble, fire_w = evaluate(s2, 1000, 899, 90)  # just below: not re-armed (margin 5 points)
    assert (wobble, fire_w) == (s2, False)
    assert evaluate(wobble, 1000, 901, 90) == (s2, False)
    s3, fire3 = evaluate(s2, 1000, 849, 90)  # clearly below: re-armed
    s4, fire4 = evaluate(s3, 1000, 901, 90)
    assert (fire1, fire2, fire3, fire4) == (True, False, False, True)
    assert (s1.arm, s4.arm) == (0, 1)
    assert evaluate(s2, 1000, 899, 90, rearm_margin=0)[0].arm == 1  # margin 0: any fall re-arms
    day = D(2026, 4, 1)
    alerted, fired = evaluate(s0, 1000, 950, 90, today=day)
    assert fired and alerted.last_alert_on == day
    rearmed, _ = evaluate(alerted, 1000, 800, 90, today=day)
    assert evaluate(rearmed, 1000, 950, 90, today=day) == (ThresholdState(True, 1, day), False)  # once a day
    assert evaluate(rearmed, 1000, 950, 90, today=D(2026, 4, 2)) == (ThresholdState(True, 1, D(2026, 4, 2)), True)
    assert evaluate(s0, allocated=0, forecast=10**9, percent=90) == (s0, False)


def _key(kind: AccountKind) -> AccountKey:
    return AccountKey(LedgerName.BUDGET, "05A", "2026-27", "mental_health", kind)


def _t(kind: TransferKind, amount: int, pending: str | None = None, name: str = "x") -> Transfer:
    now = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    return Transfer(
        id=transfer_id(name),
        kind=kind,
        debit=_key(AccountKind.BUDGET),
        credit=_key(AccountKind.SPEND),
        amount=amount,
        purpose="test",
        effective_on=now.date(),
        event_at=now,
        cause="test",
        pending_id=pending,
    )


def test_book_refuses_overdrawing_a_commitment_and_ignores_a_replayed_transfer() -> None:
    book = Book()
    pending = _t(TransferKind.PENDING, 100, name="commit")
    assert book.post(pending)
    assert book.post(_t(TransferKind.POST_PENDING, 60, pending.id, name="post-1"))
    assert not book.post(_t(TransferKind.POST_PENDING, 60, pending.id, name="post-1"))
    with pytest.raises(LedgerError, match="exceeds"):
        book.post(_t(TransferKind.POST_PENDING, 41, pending.id, name="post-2"))
    assert book.post(_t(TransferKind.VOID_PENDING, 40, pending.id, name="void"))
    spend = book.accounts[_key(AccountKind.SPEND)]
    assert spend.as_tuple() == (0, 0, 0, 60)
    assert book.check() == []


def test_check_finds_a_cached_balance_that_differs_from_its_entries() -> None:
    book = Book()
    book.post(_t(TransferKind.POSTED, 100))
    book.accounts[_key(AccountKind.SPEND)].credits_posted += 1
    problems = book.check()
    assert any("posted debits 100 != posted credits 101" in p for p in problems)
    assert any("cached balance" in p for p in problems)


def test_transfers_must_move_a_positive_amount_between_two_accounts() -> None:
    with pytest.raises(LedgerError, match="positive"):
        _t(TransferKind.POSTED, 0)
