"""What a use case locks before it writes (see docs/budget.md, Concurrency).

Ledger writers serialise per key, not per database:

* a **commissioner** key covers everything kept per commissioner: its accounts and their cached
  balances, its running totals, its allocations and its threshold states (and so the alerts);
* a **placement** key covers one placement's streams (the placement's and its repatriation
  saving's), its parked events and its invoices' matching. It is what makes a registration and
  a rate change, closure or invoice for the same placement, handled at once by two replicas,
  see each other: whichever comes second waits, then reads what the first committed;
* an **invoice** key covers one invoice's identity (provider and invoice id), so two copies of
  one invoice naming different placements cannot both be taken for the first.

A use case names every key it may write under; the adapter takes them together, in one
sorted pass, for the rest of the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from .streams import Stream


class LockScope(StrEnum):
    COMMISSIONER = "commissioner"
    PLACEMENT = "placement"
    INVOICE = "invoice"


@dataclass(frozen=True, order=True)
class LockKey:
    scope: LockScope
    name: str


def commissioner_keys(codes: Iterable[str]) -> set[LockKey]:
    return {LockKey(LockScope.COMMISSIONER, c) for c in codes}


def placement_key(placement_id: str) -> LockKey:
    return LockKey(LockScope.PLACEMENT, placement_id)


def invoice_key(provider: str, invoice_id: str) -> LockKey:
    return LockKey(LockScope.INVOICE, f"{provider}/{invoice_id}")


def stream_keys(stream: Stream) -> set[LockKey]:
    """A stream's placement, and every commissioner whose ledger it posts to (its commissioner and funders)."""
    return {placement_key(stream.placement_id), *commissioner_keys((stream.commissioner, *stream.funders))}
