"""A commissioner's position for one financial year, read from account balances.

* allocated: net posted into the budget from its sources;
* spent to date: net posted to spend accounts (bed-days that have elapsed, plus corrections);
* committed: pending on spend accounts (nights still to come this year, to the planned end or
  the year end);
* forecast outturn = spent + committed;
* headroom = allocated - forecast outturn (negative means an overspend is forecast);
* out of area versus local: spent with providers whose site lies outside the commissioner's area;
* savings: the memo ledger. For the year: the part of each repatriation's 12-month cost avoided
  that falls in this financial year. To date: the part for days that have passed. Cumulative:
  days passed in every financial year.

Every figure is linear in an account's balance, so the figures of a commissioner, year and
programme can also be kept as running totals: each posted transfer adds ``transfer_figures``
(what it adds to its two accounts' figures). ``position`` over the cached balances and the sum
of every posted transfer's figures are equal; the invariant check proves it on the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts.vocab import Programme

from .ledger import AccountKey, AccountKind, Balance, Locality, Transfer, balance_deltas

# (commissioner, financial year label, programme): the grain of the running totals.
TotalsKey = tuple[str, str, str]


@dataclass(frozen=True)
class Figures:
    allocated: int = 0
    spent: int = 0
    committed: int = 0
    out_of_area_spent: int = 0
    local_spent: int = 0
    savings_to_date: int = 0
    savings_year: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.allocated + other.allocated,
            self.spent + other.spent,
            self.committed + other.committed,
            self.out_of_area_spent + other.out_of_area_spent,
            self.local_spent + other.local_spent,
            self.savings_to_date + other.savings_to_date,
            self.savings_year + other.savings_year,
        )

    def as_tuple(self) -> tuple[int, int, int, int, int, int, int]:
        return (
            self.allocated,
            self.spent,
            self.committed,
            self.out_of_area_spent,
            self.local_spent,
            self.savings_to_date,
            self.savings_year,
        )

    @property
    def forecast_outturn(self) -> int:
        return self.spent + self.committed

    @property
    def headroom(self) -> int:
        return self.allocated - self.forecast_outturn

    def share_percent(self, part: int) -> float | None:
        total = self.out_of_area_spent + self.local_spent
        return None if total == 0 else round(100 * part / total, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "allocated_pence": self.allocated,
            "spent_pence": self.spent,
            "committed_pence": self.committed,
            "forecast_outturn_pence": self.forecast_outturn,
            "headroom_pence": self.headroom,
            "out_of_area_spent_pence": self.out_of_area_spent,
            "local_spent_pence": self.local_spent,
            "out_of_area_share_percent": self.share_percent(self.out_of_area_spent),
            "local_share_percent": self.share_percent(self.local_spent),
            "savings_to_date_pence": self.savings_to_date,
            "savings_year_pence": self.savings_year,
        }


ZERO = Figures()


def account_figures(key: AccountKey, bal: Balance) -> Figures:
    posted_in = bal.credits_posted - bal.debits_posted
    pending_in = bal.credits_pending - bal.debits_pending
    if key.kind is AccountKind.SOURCE:
        return Figures(allocated=bal.debits_posted - bal.credits_posted)
    if key.kind is AccountKind.SPEND:
        out_of_area = key.locality is Locality.OUT_OF_AREA
        return Figures(
            spent=posted_in,
            committed=pending_in,
            out_of_area_spent=posted_in if out_of_area else 0,
            local_spent=0 if out_of_area else posted_in,
        )
    if key.kind is AccountKind.SAVING:
        return Figures(savings_to_date=posted_in, savings_year=posted_in + pending_in)
    return ZERO


def transfer_figures(transfers: Iterable[Transfer]) -> dict[TotalsKey, Figures]:
    """What posting ``transfers`` adds to the figures of each commissioner, year and programme."""
    out: dict[TotalsKey, Figures] = {}
    for t in transfers:
        debit, credit = balance_deltas(t.kind, t.amount)
        for key, delta in ((t.debit, debit), (t.credit, credit)):
            figures = account_figures(key, delta)
            if figures != ZERO:
                k = (key.commissioner, key.financial_year, key.programme)
                out[k] = out.get(k, ZERO) + figures
    return out


def account_totals(balances: Mapping[AccountKey, Balance]) -> dict[TotalsKey, Figures]:
    """The figures of each commissioner, year and programme, summed from account balances."""
    out: dict[TotalsKey, Figures] = {}
    for key, bal in balances.items():
        figures = account_figures(key, bal)
        if figures != ZERO:
            k = (key.commissioner, key.financial_year, key.programme)
            out[k] = out.get(k, ZERO) + figures
    return out


def by_programme(totals: Mapping[str, Figures]) -> tuple[Figures, dict[str, Figures]]:
    """(the total, every programme's figures) from running totals by programme, as ``position`` gives them."""
    programmes = {p.value: ZERO for p in Programme} | dict(totals)
    total = ZERO
    for f in programmes.values():
        total = total + f
    return total, programmes


@dataclass(frozen=True)
class Position:
    commissioner: str
    financial_year: str
    total: Figures
    by_programme: dict[str, Figures] = field(default_factory=dict)
    savings_cumulative: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "commissioner": self.commissioner,
            "financial_year": self.financial_year,
            **self.total.to_json(),
            "savings_cumulative_pence": self.savings_cumulative,
            "by_programme": {p: f.to_json() for p, f in self.by_programme.items()},
        }


def position(balances: Mapping[AccountKey, Balance], commissioner: str, financial_year: str) -> Position:
    """``balances`` may hold other years and commissioners; they count only towards cumulative savings."""
    by_programme = {p.value: Figures() for p in Programme}
    cumulative = 0
    for key, bal in balances.items():
        if key.commissioner != commissioner:
            continue
        figures = account_figures(key, bal)
        cumulative += figures.savings_to_date
        if key.financial_year == financial_year:
            by_programme[key.programme] = by_programme.get(key.programme, ZERO) + figures
    total = ZERO
    for f in by_programme.values():
        total = total + f
    return Position(commissioner, financial_year, total, by_programme, cumulative)


def spend_by_provider(
    balances: Mapping[AccountKey, Balance], commissioner: str, financial_year: str
) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], Figures] = {}
    for key, bal in balances.items():
        if key.kind is AccountKind.SPEND and key.commissioner == commissioner and key.financial_year == financial_year:
            k = (key.counterparty, key.locality.value)
            rows[k] = rows.get(k, ZERO) + account_figures(key, bal)
    return [
        {
            "provider": provider,
            "out_of_area": locality == Locality.OUT_OF_AREA.value,
            "spent_pence": f.spent,
            "committed_pence": f.committed,
            "forecast_outturn_pence": f.forecast_outturn,
        }
        for (provider, locality), f in sorted(rows.items(), key=lambda kv: (-kv[1].forecast_outturn, kv[0]))
    ]
