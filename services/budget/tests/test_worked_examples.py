"""Worked examples a finance lead can check by hand (docs/budget.md shows the arithmetic).

Each drives the use cases through the in-memory fakes, then reads the position exactly as the
HTTP API does. Figures are pence; £620.00 a night is 62000.
"""

from __future__ import annotations

import datetime as dt

from homeward.budget.domain.position import Position, position
from homeward.budget.handlers import (
    allocate,
    change_rate,
    close_placement,
    receive_invoice,
    record_repatriation,
    register_placement,
)
from homeward.budget.ports import Config
from homeward.contracts.events import BudgetThresholdBreached, InvoiceVarianceFound

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


def pos(h: Harness, fy: str, commissioner: str = "05A") -> Position:
    return position(h.repo.book.accounts, commissioner, fy)


async def accrue_all(h: Harness, today: dt.date) -> None:
    h.today = today
    for sid in await h.repo.streams_to_accrue(today, "", 1000):
        await h.accrue(sid)


async def test_placement_spanning_31_march_splits_nights_by_year_and_rolls_the_commitment() -> None:
    h = Harness(D(2026, 3, 21))
    await h.handle(
        register_placement, from_placements(registered("P1", start=D(2026, 3, 20), rate=62000), D(2026, 3, 21))
    )
    # 20-31 March: 12 nights x £620 = £7,440 committed in 2025-26; nothing spent yet.
    assert (pos(h, "2025-26").total.spent, pos(h, "2025-26").total.committed) == (0, 12 * 62000) == (0, 744_000)

    await accrue_all(h, D(2026, 3, 25))  # nights 20-24 March have passed
    assert (pos(h, "2025-26").total.spent, pos(h, "2025-26").total.committed) == (310_000, 434_000)

    await accrue_all(h, D(2026, 4, 10))  # the job ran late, after the year end
    old, new = pos(h, "2025-26").total, pos(h, "2026-27").total
    assert (old.spent, old.committed) == (744_000, 0)
    # Rolled into 2026-27: 365 nights x £620 = £226,300; 1-9 April (9 nights, £5,580) already spent.
    assert (new.spent, new.committed) == (9 * 62000, 356 * 62000) == (558_000, 22_072_000)
    assert new.forecast_outturn == 365 * 62000 == 22_630_000
    assert h.repo.book.check() == []


async def test_leap_year_commits_366_nights_and_a_closure_voids_the_rest() -> None:
    h = Harness(D(2027, 4, 1))
    await h.handle(
        register_placement, from_placements(registered("P2", start=D(2027, 4, 1), rate=54500), D(2027, 4, 1))
    )
    # FY 2027-28 holds 29 February 2028: 366 nights x £545 = £199,470.
    assert pos(h, "2027-28").total.committed == 366 * 54500 == 19_947_000

    h.today = D(2028, 3, 2)
    await h.handle(close_placement, from_placements(closed("P2", D(2028, 3, 1), D(2027, 4, 1)), D(2028, 3, 2)))
    await accrue_all(h, D(2028, 3, 5))
    # 1 April 2027 to 29 February 2028 inclusive: 335 nights x £545 = £182,575; March is voided.
    figures = pos(h, "2027-28").total
    assert (figures.spent, figures.committed) == (335 * 54500, 0) == (18_257_500, 0)
    assert h.repo.book.check() == []


async def test_pooled_placement_splits_each_night_with_the_remainder_to_the_largest_fractions() -> None:
    h = Harness(D(2026, 4, 1))
    funding = [("05A", 3334), ("05H", 3333), ("05R", 3333)]
    event = registered("P3", start=D(2026, 4, 1), rate=54500, planned_end=D(2026, 5, 1), funding=funding)
    await h.handle(register_placement, from_placements(event, D(2026, 4, 1)))
    await accrue_all(h, D(2026, 5, 1))
    # £545 a night: 05A 181.703 -> 181.70, 05H and 05R 181.6485 -> 181.64 each, leaving 2p; the two
    # largest fractions (.85, .85) take one penny each: 05A 18170, 05H 18165, 05R 18165 a night.
    spent = {c: pos(h, "2026-27", c).total.spent for c in ("05A", "05H", "05R")}
    assert spent == {"05A": 30 * 18170, "05H": 30 * 18165, "05R": 30 * 18165}
    assert sum(spent.values()) == 30 * 54500 == 1_635_000
    assert h.repo.book.check() == []


async def test_back_dated_rate_change_posts_a_correction_and_recommits_at_the_new_rate() -> None:
    h = Harness(D(2026, 4, 1))
    await h.handle(
        register_placement, from_placements(registered("P4", start=D(2026, 4, 1), rate=50000), D(2026, 4, 1))
    )
    await accrue_all(h, D(2026, 5, 1))
    assert pos(h, "2026-27").total.spent == 30 * 50000 == 1_500_000

    h.today = D(2026, 5, 2)
    change = from_placements(rate_changed("P4", D(2026, 4, 16), 55000, previous=50000), D(2026, 5, 2))
    await h.handle(change_rate, change)
    figures = pos(h, "2026-27").total
    # 16-30 April re-priced: 15 nights x £50 more = £750 correction.
    assert figures.spent == 1_500_000 + 15 * 5000 == 1_575_000
    # 1 May 2026 to 31 March 2027: 335 nights at £550.
    assert figures.committed == 335 * 55000 == 18_425_000
    assert figures.forecast_outturn == 15 * 50000 + 350 * 55000 == 20_000_000
    purposes = [t.purpose for t in h.repo.book.transfers.values() if t.cause == change.id]
    assert sorted(purposes) == ["commitment", "correction", "void"]
    assert h.repo.book.check() == []


async def test_closure_before_accrued_nights_reverses_the_spend_past_the_end() -> None:
    h = Harness(D(2026, 4, 1))
    await h.handle(
        register_placement, from_placements(registered("P5", start=D(2026, 4, 1), rate=50000), D(2026, 4, 1))
    )
    await accrue_all(h, D(2026, 5, 1))
    h.today = D(2026, 5, 3)
    await h.handle(close_placement, from_placements(closed("P5", D(2026, 4, 21), D(2026, 4, 1)), D(2026, 5, 3)))
    figures = pos(h, "2026-27").total
    # Discharged on 21 April: 20 nights stand (£10,000); the 10 nights accrued after it are reversed.
    assert (figures.spent, figures.committed) == (20 * 50000, 0)
    await accrue_all(h, D(2026, 6, 1))
    assert pos(h, "2026-27").total.spent == 1_000_000
    assert h.repo.book.check() == []


async def test_repatriation_saving_is_twelve_months_split_by_financial_year_and_realised_as_days_pass() -> None:
    h = Harness(D(2026, 10, 1))
    event = repatriated("P6", on=D(2026, 10, 1), from_rate=62000, to_rate=35000)
    await h.handle(record_repatriation, from_placements(event, D(2026, 10, 1)))
    # £620 - £350 = £270 a day; 1 Oct 2026 - 31 Mar 2027 is 182 days, 1 Apr - 30 Sep 2027 is 183.
    assert pos(h, "2026-27").total.savings_year == 182 * 27000 == 4_914_000
    assert pos(h, "2027-28").total.savings_year == 183 * 27000 == 4_941_000
    assert pos(h, "2026-27").total.savings_to_date == 0
    await accrue_all(h, D(2026, 11, 1))
    assert pos(h, "2026-27").total.savings_to_date == 31 * 27000 == 837_000
    # Savings are memo entries: spend and commitment do not move.
    assert (pos(h, "2026-27").total.spent, pos(h, "2026-27").total.committed) == (0, 0)
    assert h.repo.book.check() == []


async def test_repatriation_window_over_29_february_has_366_days() -> None:
    h = Harness(D(2027, 6, 1))
    event = repatriated("P7", on=D(2027, 6, 1), from_rate=10000, to_rate=9000)
    await h.handle(record_repatriation, from_placements(event, D(2027, 6, 1)))
    assert pos(h, "2027-28").total.savings_year == 305 * 1000  # 1 Jun 2027 - 31 Mar 2028, with 29 Feb
    assert pos(h, "2028-29").total.savings_year == 61 * 1000  # 1 Apr - 31 May 2028


async def test_invoice_variance_is_reported_only_beyond_the_larger_tolerance() -> None:
    h = Harness(D(2026, 4, 2), Config(invoice_tolerance_pence=10_000, invoice_tolerance_percent=2))
    await h.handle(
        register_placement, from_placements(registered("P8", start=D(2026, 3, 1), rate=54500), D(2026, 3, 1))
    )
    # March: 31 nights x £545 = £16,895; tolerance max(£100, 2% = £337.90) = £337.90.
    within = invoice("INV-1", "P8", D(2026, 3, 1), D(2026, 3, 31), 1_720_000)  # +£305
    beyond = invoice("INV-2", "P8", D(2026, 3, 1), D(2026, 3, 31), 1_750_000)  # +£605
    await h.handle(receive_invoice, from_partner(within, "8Z001", D(2026, 4, 2)))
    await h.handle(receive_invoice, from_partner(beyond, "8Z001", D(2026, 4, 2)))
    alerts = h.outbox.of(InvoiceVarianceFound)
    assert [(a.invoice_id, a.accrued_pence, a.variance_pence, a.tolerance_pence) for a in alerts] == [
        ("INV-2", 1_689_500, 60_500, 33_790)
    ]


async def test_threshold_alerts_once_per_crossing_and_again_only_after_falling_back() -> None:
    h = Harness(D(2026, 4, 1), Config(thresholds_percent=(90, 100)))
    await h.handle(allocate, from_partner(allocated("05A", 10_000_000), "05A", D(2026, 4, 1)))
    # £250 x 365 = £91,250: 91.25% of £100,000.
    await h.handle(
        register_placement, from_placements(registered("T1", start=D(2026, 4, 1), rate=25000), D(2026, 4, 1))
    )
    await h.handle(
        register_placement,
        from_placements(registered("T2", start=D(2026, 4, 1), rate=1000, planned_end=D(2026, 4, 11)), D(2026, 4, 1)),
    )
    totals = [a for a in h.outbox.of(BudgetThresholdBreached) if a.programme is None]
    assert [a.threshold_percent for a in totals] == [90]
    # A second £250 placement takes the forecast past 100%.
    await h.handle(
        register_placement,
        from_placements(registered("T3", start=D(2026, 4, 1), rate=25000, planned_end=D(2026, 6, 1)), D(2026, 4, 1)),
    )
    totals = [a for a in h.outbox.of(BudgetThresholdBreached) if a.programme is None]
    assert [a.threshold_percent for a in totals] == [90, 100]
    # Next day, T3 closes at once (0 nights): the forecast falls back to 91.35%; 100% re-arms
    # (below 95%), 90% stays breached.
    h.today = D(2026, 4, 2)
    await h.handle(close_placement, from_placements(closed("T3", D(2026, 4, 1), D(2026, 4, 1)), D(2026, 4, 2)))
    assert len([a for a in h.outbox.of(BudgetThresholdBreached) if a.programme is None]) == 2
    # A new £30 placement for the year (+£10,950) crosses 100% again: a second 100% alert, no new 90%.
    await h.handle(register_placement, from_placements(registered("T4", start=D(2026, 4, 1), rate=3000), D(2026, 4, 2)))
    totals = [a for a in h.outbox.of(BudgetThresholdBreached) if a.programme is None]
    assert [a.threshold_percent for a in totals] == [90, 100, 100]
    assert totals[-1].forecast_outturn_pence == 365 * 25000 + 10 * 1000 + 365 * 3000
    # The same day, T4 closes (back to 91.35%, 100% re-arms) and a £35 placement crosses 100% a
    # third time: recorded, but the 100% threshold has already alerted today.
    await h.handle(close_placement, from_placements(closed("T4", D(2026, 4, 1), D(2026, 4, 1)), D(2026, 4, 2)))
    await h.handle(register_placement, from_placements(registered("T5", start=D(2026, 4, 1), rate=3500), D(2026, 4, 2)))
    assert len([a for a in h.outbox.of(BudgetThresholdBreached) if a.programme is None]) == 3
    state = await h.repo.threshold_state("05A", "2026-27", "*", 100)
    assert (state.breached, state.arm, state.last_alert_on) == (True, 2, D(2026, 4, 2))


async def test_no_threshold_alert_for_a_closed_financial_year() -> None:
    # Today is 1 May 2026: 2025-26 has closed. A late statement of a placement that took its
    # forecast to 109.5% changes the ledger but alerts nobody; the open year still alerts.
    h = Harness(D(2026, 5, 1), Config(thresholds_percent=(90, 100)))
    await h.handle(allocate, from_partner(allocated("05A", 10_000_000, fy="2025-26"), "05A", D(2025, 4, 1)))
    # £300 x 365 nights of 2025-26 = £109,500
    await h.handle(
        register_placement, from_placements(registered("L1", start=D(2025, 4, 1), rate=30000), D(2026, 5, 1))
    )
    await h.handle(close_placement, from_placements(closed("L1", D(2026, 4, 1), D(2025, 4, 1)), D(2026, 5, 1)))
    assert h.outbox.of(BudgetThresholdBreached) == []
    assert pos(h, "2025-26").total.forecast_outturn == 365 * 30000  # the ledger has it all the same
    # £300 x 365 nights from 1 April 2026 against £100,000: the open year crosses both thresholds.
    await h.handle(allocate, from_partner(allocated("05A", 10_000_000, allocation_id="A2"), "05A", D(2026, 4, 1)))
    await h.handle(
        register_placement, from_placements(registered("L2", start=D(2026, 4, 1), rate=30000), D(2026, 5, 1))
    )
    alerts = [
        (a.financial_year, a.threshold_percent) for a in h.outbox.of(BudgetThresholdBreached) if a.programme is None
    ]
    assert alerts == [("2026-27", 90), ("2026-27", 100)]


async def test_threshold_alerts_judge_the_ledger_as_it_stands_not_the_order_two_topics_were_read() -> None:
    # 05A's allocation comes in two parts on its own topic; a £250-a-night placement for the
    # year (£91,250) comes on placements' topic. Read in either order, the ledger ends the same:
    # £91,250 of £200,000 (45.6%), no threshold crossed.
    first = from_partner(allocated("05A", 10_000_000), "05A", D(2026, 4, 1))
    second = from_partner(allocated("05A", 10_000_000, allocation_id="ALLOC-2"), "05A", D(2026, 4, 1))
    placement = from_placements(registered("T1", start=D(2026, 4, 1), rate=25000), D(2026, 4, 1))
    orders = {
        "placement between the allocations": [(allocate, first), (register_placement, placement), (allocate, second)],
        "allocations first": [(allocate, first), (allocate, second), (register_placement, placement)],
    }

    async def alerts(order: str, job_after_each_event: bool) -> list[tuple[int, str]]:
        h = Harness(D(2026, 4, 1), Config(thresholds_percent=(90, 100)))
        for handler, event in orders[order]:
            await h.handle(handler, event, thresholds=job_after_each_event)
        await h.check_thresholds()
        return sorted((a.threshold_percent, str(a.programme)) for a in h.outbox.of(BudgetThresholdBreached))

    # The thresholds job judges what has been posted when it runs: the same in both orders.
    assert await alerts("placement between the allocations", False) == await alerts("allocations first", False) == []
    # Judged after every event instead, the 91.25% the first order passed through would alert.
    assert await alerts("placement between the allocations", True) != await alerts("allocations first", True)
