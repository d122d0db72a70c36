"""What the budget remembers besides the ledger: allocations, invoices and parked events."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Allocation:
    commissioner: str
    allocation_id: str
    financial_year: str
    programme: str
    amount: int
    source: str
    source_organisation: str | None
    event_ids: tuple[str, ...]  # every event that set the amount, so a replayed old revision is recognised

    def same_budget(self, other: Allocation) -> bool:
        return (self.financial_year, self.programme, self.source, self.source_organisation) == (
            other.financial_year,
            other.programme,
            other.source,
            other.source_organisation,
        )


class InvoiceStatus(StrEnum):
    MATCHED = "matched"  # compared with the accrual
    PARKED = "parked"  # its placement is not known yet; matched when it arrives
    REFUSED = "refused"  # found not to be the placement's provider once the placement arrived
    HELD = "held"  # its amount per night is outside the bed type's plausibility bounds: confirmation needed


@dataclass(frozen=True)
class Invoice:
    provider: str
    invoice_id: str
    commissioner: str
    placement_id: str
    period_start: dt.date
    period_end: dt.date
    amount: int
    event_id: str
    status: InvoiceStatus = InvoiceStatus.PARKED
    accrued: int | None = None
    variance: int | None = None
    tolerance: int | None = None
    flagged: bool = False
    reason: str | None = None
    confirmed_by: str | None = None  # the commissioner that confirmed it despite the plausibility bounds

    def same_claim(self, other: Invoice) -> bool:
        return (self.commissioner, self.placement_id, self.period_start, self.period_end, self.amount) == (
            other.commissioner,
            other.placement_id,
            other.period_start,
            other.period_end,
            other.amount,
        )
