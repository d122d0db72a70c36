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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from homeward.contracts.vocab import Programme

from .ledger import AccountKey, AccountKind, Balance, Locality


@dataclass(frozen=True)
class Figures:
    allocated: int = 0
    spent: int = 0
    committed: int = 0
    out_of_area_spent: int = 0
    local_spent: int = 0
    savings_to_date: int = 0
    savings_year: int = 0

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


def _add(a: Figures, b: Figures) -> Figures:
    x, y = asdict(a), asdict(b)
    return Figures(**{k: x[k] + y[k] for k in x})


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
    return Figures()


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
            by_programme[key.programme] = _add(by_programme.get(key.programme, Figures()), figures)
    total = Figures()
    for f in by_programme.values():
        total = _add(total, f)
    return Position(commissioner, financial_year, total, by_programme, cumulative)


def spend_by_provider(
    balances: Mapping[AccountKey, Balance], commissioner: str, financial_year: str
) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], Figures] = {}
    for key, bal in balances.items():
        if key.kind is AccountKind.SPEND and key.commissioner == commissioner and key.financial_year == financial_year:
            k = (key.counterparty, key.locality.value)
            rows[k] = _add(rows.get(k, Figures()), account_figures(key, bal))
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
