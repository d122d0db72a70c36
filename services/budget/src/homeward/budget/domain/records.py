"""What the budget remembers besides the ledger: allocations and invoices. An invoice is an
aggregate: holding it or matching it records the alert finance receive (AmountHeld,
InvoiceVarianceFound), which the unit of work publishes once, under a deterministic id."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from enum import StrEnum

from homeward.contracts.events import AmountHeld, InvoiceVarianceFound
from homeward.contracts.plausibility import RateBounds
from homeward.contracts.vocab import BedType
from homeward.kit.aggregate import Aggregate
from homeward.kit.identity import stable_id

from .invoices import Assessment


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
class Invoice(Aggregate):
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

    def held(self, *, bed_type: BedType, nightly: int, bounds: RateBounds, reason: str) -> Invoice:
        """This invoice held until its commissioner confirms it: it asks ``nightly`` a night, above
        the plausible ``bounds`` for ``bed_type``. Records AmountHeld (once per invoice)."""
        held = replace(self, status=InvoiceStatus.HELD, reason=reason)
        held.record_event(
            AmountHeld(
                kind="invoice",
                placement_id=self.placement_id,
                commissioner=self.commissioner,
                provider=self.provider,
                bed_type=bed_type,
                asserted_by=self.provider,
                daily_rate_pence=nightly,
                lower_pence=bounds.lower_pence,
                upper_pence=bounds.upper_pence,
                invoice_id=self.invoice_id,
                invoice_amount_pence=self.amount,
                period_start=self.period_start,
                period_end=self.period_end,
            ),
            id=stable_id("AmountHeld", "invoice", self.provider, self.invoice_id),
        )
        return held

    def matched(self, a: Assessment) -> Invoice:
        """This invoice compared with the accrual. Beyond tolerance, records InvoiceVarianceFound:
        once per invoice and accrued figure, so a later rate change that moves the accrual
        alerts again."""
        matched = replace(
            self,
            status=InvoiceStatus.MATCHED,
            accrued=a.accrued,
            variance=a.variance,
            tolerance=a.tolerance,
            flagged=a.beyond_tolerance,
            reason=None,
        )
        if a.beyond_tolerance:
            matched.record_event(
                InvoiceVarianceFound(
                    invoice_id=self.invoice_id,
                    placement_id=self.placement_id,
                    provider=self.provider,
                    commissioner=self.commissioner,
                    period_start=self.period_start,
                    period_end=self.period_end,
                    invoiced_pence=self.amount,
                    accrued_pence=max(a.accrued, 0),
                    variance_pence=a.variance,
                    tolerance_pence=a.tolerance,
                ),
                id=stable_id("InvoiceVarianceFound", self.provider, self.invoice_id, a.accrued),
            )
        return matched
