"""Double entry in integer pence, after TigerBeetle and pgledger.

Accounts hold pending and posted debits and credits; balances are derived from them.
Transfers are immutable and carry a caller-chosen id, so posting the same transfer twice
changes nothing. Four kinds of transfer:

* ``posted``: moves money at once (an allocation, a correction);
* ``pending``: reserves money (a commitment for nights to come, a projected saving);
* ``post_pending``: turns part of a pending transfer into posted (bed-days that elapsed).
  Unlike TigerBeetle, a pending transfer may be posted in several parts, one per range of
  nights, until nothing remains;
* ``void_pending``: releases what remains of a pending transfer.

``post_pending`` and ``void_pending`` use the accounts of their pending transfer, and together
never exceed its amount. Money never disappears: every transfer debits one account and credits
another by the same amount, so total debits always equal total credits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

TRANSFER_NAMESPACE = uuid.UUID("3b0e6a52-9d1c-4f4e-8a7b-5c2d1e0f9a84")


def transfer_id(*parts: object) -> str:
    """A stable transfer id from what caused it: the same cause always gives the same id."""
    return str(uuid.uuid5(TRANSFER_NAMESPACE, "|".join(str(p) for p in parts)))


class TransferKind(StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"


class LedgerName(StrEnum):
    BUDGET = "budget"  # the delegated budget: allocations, commitments, spend
    MEMO = "memo"  # repatriation savings (cost avoided), kept apart from spend


class AccountKind(StrEnum):
    SOURCE = "source"  # where an allocation comes from (NHS England, a lead provider, a pooled fund)
    BUDGET = "budget"  # the commissioner's delegated budget for one year and programme
    SPEND = "spend"  # spend with one provider, local or out of area
    BASELINE = "baseline"  # memo: what the out-of-area placement would have cost
    SAVING = "saving"  # memo: the cost avoided


class Locality(StrEnum):
    NONE = ""
    LOCAL = "local"
    OUT_OF_AREA = "out_of_area"


@dataclass(frozen=True, order=True)
class AccountKey:
    ledger: LedgerName
    commissioner: str
    financial_year: str
    programme: str
    kind: AccountKind
    counterparty: str = ""
    locality: Locality = Locality.NONE

    def label(self) -> str:
        parts = [self.ledger.value, self.commissioner, self.financial_year, self.programme, self.kind.value]
        parts += [p for p in (self.counterparty, self.locality.value) if p]
        return ":".join(parts)


@dataclass
class Balance:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def add(self, other: Balance) -> None:
        self.debits_pending += other.debits_pending
        self.debits_posted += other.debits_posted
        self.credits_pending += other.credits_pending
        self.credits_posted += other.credits_posted

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)


@dataclass(frozen=True)
class Transfer:
    id: str
    kind: TransferKind
    debit: AccountKey
    credit: AccountKey
    amount: int
    purpose: str
    effective_on: dt.date
    event_at: dt.datetime
    cause: str
    stream_id: str | None = None
    placement_id: str | None = None
    funder: str | None = None
    financial_year: str | None = None
    range_start: dt.date | None = None
    range_end: dt.date | None = None
    pending_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Who asserted it (docs/authority.md): the organisation whose statement caused it and the
    # principal that organisation was verified as. Set by the use case before it posts.
    asserted_by: str | None = None
    principal: str | None = None

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise LedgerError(f"transfer {self.id}: the amount must be positive, got {self.amount}")
        if self.debit == self.credit:
            raise LedgerError(f"transfer {self.id}: debit and credit accounts must differ")
        needs_pending = self.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING)
        if needs_pending != (self.pending_id is not None):
            raise LedgerError(f"transfer {self.id}: only post_pending and void_pending name a pending transfer")


class LedgerError(Exception):
    """A posting that would break the ledger's rules (a bug, never a partner's mistake)."""


def balance_deltas(kind: TransferKind, amount: int) -> tuple[Balance, Balance]:
    """What a transfer adds to its debit account and to its credit account."""
    if kind is TransferKind.POSTED:
        return Balance(debits_posted=amount), Balance(credits_posted=amount)
    if kind is TransferKind.PENDING:
        return Balance(debits_pending=amount), Balance(credits_pending=amount)
    if kind is TransferKind.POST_PENDING:
        return (
            Balance(debits_pending=-amount, debits_posted=amount),
            Balance(credits_pending=-amount, credits_posted=amount),
        )
    return Balance(debits_pending=-amount), Balance(credits_pending=-amount)


class Book:
    """An in-memory ledger with the same rules the database enforces (tests and the invariant check)."""

    def __init__(self) -> None:
        self.accounts: dict[AccountKey, Balance] = {}
        self.transfers: dict[str, Transfer] = {}
        self._drawn: dict[str, int] = {}

    def remaining(self, pending_id: str) -> int:
        return self.transfers[pending_id].amount - self._drawn.get(pending_id, 0)

    def post(self, transfer: Transfer) -> bool:
        """Apply a transfer; False (and nothing changes) if its id was posted before."""
        if transfer.id in self.transfers:
            return False
        if transfer.pending_id is not None:
            pending = self.transfers.get(transfer.pending_id)
            if pending is None or pending.kind is not TransferKind.PENDING:
                raise LedgerError(f"transfer {transfer.id}: {transfer.pending_id} is not a pending transfer")
            if (pending.debit, pending.credit) != (transfer.debit, transfer.credit):
                raise LedgerError(f"transfer {transfer.id}: accounts differ from its pending transfer")
            if transfer.amount > self.remaining(pending.id):
                raise LedgerError(f"transfer {transfer.id}: exceeds what remains of {pending.id}")
            self._drawn[pending.id] = self._drawn.get(pending.id, 0) + transfer.amount
        debit, credit = balance_deltas(transfer.kind, transfer.amount)
        self.accounts.setdefault(transfer.debit, Balance()).add(debit)
        self.accounts.setdefault(transfer.credit, Balance()).add(credit)
        self.transfers[transfer.id] = transfer
        return True

    def post_all(self, transfers: Iterable[Transfer]) -> int:
        return sum(self.post(t) for t in transfers)

    def check(self) -> list[str]:
        return check_ledger(self.accounts, self.transfers.values())


def derive_balances(transfers: Iterable[Transfer]) -> dict[AccountKey, Balance]:
    out: dict[AccountKey, Balance] = {}
    for t in transfers:
        debit, credit = balance_deltas(t.kind, t.amount)
        out.setdefault(t.debit, Balance()).add(debit)
        out.setdefault(t.credit, Balance()).add(credit)
    return out


def check_ledger(cached: Mapping[AccountKey, Balance], transfers: Iterable[Transfer]) -> list[str]:
    """Problems found, none when the ledger holds: debits equal credits in each ledger, every
    cached balance equals the sum of its entries, and no pending transfer is over-drawn."""
    transfers = list(transfers)
    problems: list[str] = []
    totals: dict[LedgerName, Balance] = {}
    for key, bal in cached.items():
        totals.setdefault(key.ledger, Balance()).add(bal)
    for ledger, total in sorted(totals.items()):
        if total.debits_posted != total.credits_posted:
            problems.append(f"{ledger}: posted debits {total.debits_posted} != posted credits {total.credits_posted}")
        if total.debits_pending != total.credits_pending:
            problems.append(
                f"{ledger}: pending debits {total.debits_pending} != pending credits {total.credits_pending}"
            )
    derived = derive_balances(transfers)
    for key in sorted(set(cached) | set(derived)):
        have = cached.get(key, Balance()).as_tuple()
        want = derived.get(key, Balance()).as_tuple()
        if have != want:
            problems.append(f"{key.label()}: cached balance {have} != sum of entries {want}")
    drawn: dict[str, int] = {}
    by_id = {t.id: t for t in transfers}
    for t in transfers:
        if t.pending_id is not None:
            drawn[t.pending_id] = drawn.get(t.pending_id, 0) + t.amount
    for pending_id, amount in sorted(drawn.items()):
        pending = by_id.get(pending_id)
        if pending is None or amount > pending.amount:
            problems.append(f"pending transfer {pending_id} is drawn beyond its amount")
    return problems
