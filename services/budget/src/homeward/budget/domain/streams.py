"""Streams: what one placement (or one repatriation's saving) owes the ledger, night by night.

A stream knows its terms (start, end, planned end, rate schedule, funding shares) and how far
the ledger has gone with it: nights before ``accrued_through`` are spend, nights from there to
``committed_through`` are pending commitments. Two operations keep the ledger in line with the
terms, and both return transfers for the caller to post:

* ``reconcile`` (after any fact changes, and before each accrual step): corrects spend already
  accrued to what the terms say it should be, and voids and re-commits the commitment of each
  funder and financial year whose remaining amount or end no longer matches the terms;
* ``accrue`` (the scheduled job): turns elapsed nights into spend, month by month, extending
  the commitment into a new financial year, or past an overstayed planned end, on the day it
  is needed.

Invariants (tested with random sequences of events): spend equals the schedule integrated over
``[start, accrued_through)`` and spend plus remaining commitment equals it integrated over
``[start, committed_through)``, for each funder and financial year.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .calendar import fy_end, fy_label, fy_of, month_starts_between, parse_fy, split_by_fy
from .ledger import AccountKey, AccountKind, LedgerError, LedgerName, Locality, Transfer, TransferKind, transfer_id
from .money import Share
from .schedule import RateSchedule

FunderYear = tuple[str, int]


class StreamKind(StrEnum):
    PLACEMENT = "placement"
    SAVING = "saving"


def placement_stream_id(placement_id: str) -> str:
    return f"placement:{placement_id}"


def saving_stream_id(from_placement_id: str) -> str:
    return f"saving:{from_placement_id}"


@dataclass
class OpenCommitment:
    """What remains of one pending transfer; ``remaining`` is signed (+ in the stream's normal direction)."""

    pending_id: str
    funder: str
    year: int
    start: dt.date
    end: dt.date
    remaining: int
    debit: AccountKey
    credit: AccountKey


@dataclass
class StreamBook:
    """The ledger's view of one stream: spend per funder and year, and its open commitments."""

    spend: dict[FunderYear, int] = field(default_factory=dict)
    open: dict[FunderYear, list[OpenCommitment]] = field(default_factory=dict)

    def record(self, t: Transfer) -> None:
        if t.funder is None or t.financial_year is None:
            raise LedgerError(f"transfer {t.id} belongs to a stream but names no funder or year")
        key = (t.funder, parse_fy(t.financial_year))
        signed = t.amount if normal_direction(t.debit) else -t.amount
        if t.kind in (TransferKind.POSTED, TransferKind.POST_PENDING):
            self.spend[key] = self.spend.get(key, 0) + signed
        if t.kind is TransferKind.PENDING:
            assert t.range_start is not None and t.range_end is not None
            self.open.setdefault(key, []).append(
                OpenCommitment(t.id, key[0], key[1], t.range_start, t.range_end, signed, t.debit, t.credit)
            )
        elif t.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
            for c in self.open.get(key, []):
                if c.pending_id == t.pending_id:
                    c.remaining -= signed
            self.open[key] = [c for c in self.open.get(key, []) if c.remaining != 0]

    def open_total(self) -> dict[FunderYear, int]:
        return {k: sum(c.remaining for c in v) for k, v in self.open.items() if v}


def normal_direction(debit: AccountKey) -> bool:
    """A stream's money normally leaves the budget (spend) or the baseline (saving)."""
    return debit.kind in (AccountKind.BUDGET, AccountKind.BASELINE)


@dataclass
class Stream:
    id: str
    kind: StreamKind
    placement_id: str
    commissioner: str
    programme: str
    provider: str
    out_of_area: bool
    schedule: RateSchedule
    shares: tuple[Share, ...]
    registered_rate: int | None = None
    planned_end: dt.date | None = None
    end: dt.date | None = None
    accrued_through: dt.date = dt.date.min
    committed_through: dt.date = dt.date.min
    epoch: int = 0
    last_effective: dt.date | None = None
    applied_events: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.accrued_through = max(self.accrued_through, self.start)
        self.committed_through = max(self.committed_through, self.start)
        if self.registered_rate is None:
            self.registered_rate = self.schedule.rates[0][1]

    @property
    def start(self) -> dt.date:
        return self.schedule.start

    @property
    def stay_end(self) -> dt.date | None:
        return None if self.end is None else max(self.end, self.start)

    @property
    def funders(self) -> tuple[str, ...]:
        return tuple(s.funder for s in self.shares)

    def accounts(self, funder: str, year: int) -> tuple[AccountKey, AccountKey]:
        """(where the money comes from, where it goes) for one funder and financial year."""
        fy = fy_label(year)
        if self.kind is StreamKind.PLACEMENT:
            locality = Locality.OUT_OF_AREA if self.out_of_area else Locality.LOCAL
            return (
                AccountKey(LedgerName.BUDGET, funder, fy, self.programme, AccountKind.BUDGET),
                AccountKey(LedgerName.BUDGET, funder, fy, self.programme, AccountKind.SPEND, self.provider, locality),
            )
        return (
            AccountKey(LedgerName.MEMO, funder, fy, self.programme, AccountKind.BASELINE),
            AccountKey(LedgerName.MEMO, funder, fy, self.programme, AccountKind.SAVING),
        )

    def horizon(self, today: dt.date) -> dt.date:
        """The exclusive end of the nights to hold committed as of ``today``.

        A closed stream: its end. An open one: the end of the financial year (of today, or of the
        start if later), or the planned end if that comes first and has not yet passed. Once a
        planned end passes without a closure the person is still in the bed, so the commitment
        runs to the year end again. An open stream's horizon never shrinks.
        """
        if self.stay_end is not None:
            return self.stay_end
        year_end = fy_end(fy_of(max(today, self.start)))
        if self.planned_end is not None and self.planned_end > today:
            horizon = min(max(self.planned_end, self.start), year_end)
        else:
            horizon = year_end
        return max(horizon, self.committed_through)

    def facts(self) -> tuple[object, ...]:
        """What a registration states; a second registration must state the same."""
        return (
            self.kind,
            self.placement_id,
            self.commissioner,
            self.programme,
            self.provider,
            self.out_of_area,
            self.start,
            self.registered_rate,
            self.shares,
            self.planned_end,
        )

    # ----------------------------------------------------------------------------- planning

    def _effective(self, natural: dt.date) -> dt.date:
        # Entries of one stream never go back in time, so "as of" any date sees a consistent prefix.
        effective = natural if self.last_effective is None else max(natural, self.last_effective)
        self.last_effective = effective
        return effective

    def _transfer(
        self,
        book: StreamBook,
        *,
        id: str,
        kind: TransferKind,
        purpose: str,
        funder: str,
        year: int,
        signed: int,
        natural: dt.date,
        event_at: dt.datetime,
        cause: str,
        range_: tuple[dt.date, dt.date],
        commitment: OpenCommitment | None = None,
    ) -> Transfer:
        if commitment is not None:
            debit, credit = commitment.debit, commitment.credit
        else:
            source, target = self.accounts(funder, year)
            debit, credit = (source, target) if signed > 0 else (target, source)
        t = Transfer(
            id=id,
            kind=kind,
            debit=debit,
            credit=credit,
            amount=abs(signed),
            purpose=purpose,
            effective_on=self._effective(natural),
            event_at=event_at,
            cause=cause,
            stream_id=self.id,
            placement_id=self.placement_id,
            funder=funder,
            financial_year=fy_label(year),
            range_start=range_[0],
            range_end=range_[1],
            pending_id=None if commitment is None else commitment.pending_id,
        )
        book.record(t)
        return t

    def reconcile(
        self, book: StreamBook, *, today: dt.date, cause: str, natural: dt.date, event_at: dt.datetime
    ) -> list[Transfer]:
        out: list[Transfer] = []
        common: dict[str, Any] = {"natural": natural, "event_at": event_at, "cause": cause}
        stay_end = self.stay_end
        if stay_end is not None and self.accrued_through > stay_end:
            self.accrued_through = stay_end
            self.epoch += 1

        target = self.schedule.funder_cost_by_fy(self.start, self.accrued_through, self.shares)
        for funder, year in sorted(set(target) | set(book.spend)):
            diff = target.get((funder, year), 0) - book.spend.get((funder, year), 0)
            if diff:
                out.append(
                    self._transfer(
                        book,
                        id=transfer_id(cause, "correction", self.id, funder, year, self.epoch),
                        kind=TransferKind.POSTED,
                        purpose="correction",
                        funder=funder,
                        year=year,
                        signed=diff,
                        range_=(self.start, self.accrued_through),
                        **common,
                    )
                )

        horizon = max(self.horizon(today), self.accrued_through)
        wanted: dict[FunderYear, tuple[int, dt.date, dt.date]] = {}
        for year, a, b in split_by_fy(self.accrued_through, horizon):
            for funder, amount in self.schedule.funder_cost(a, b, self.shares).items():
                if amount:
                    wanted[(funder, year)] = (amount, a, b)
        for key in sorted(set(wanted) | {k for k, v in book.open.items() if v}):
            funder, year = key
            current = list(book.open.get(key, []))
            want = wanted.get(key)
            if want and len(current) == 1 and (current[0].remaining, current[0].end) == (want[0], want[2]):
                continue
            for c in current:
                out.append(
                    self._transfer(
                        book,
                        id=transfer_id(cause, "void", c.pending_id),
                        kind=TransferKind.VOID_PENDING,
                        purpose="void",
                        funder=funder,
                        year=year,
                        signed=c.remaining,
                        range_=(max(self.accrued_through, c.start), c.end),
                        commitment=c,
                        **common,
                    )
                )
            if want:
                amount, a, b = want
                out.append(
                    self._transfer(
                        book,
                        id=transfer_id(cause, "commit", self.id, funder, year, a, b, amount, self.epoch),
                        kind=TransferKind.PENDING,
                        purpose="commitment",
                        funder=funder,
                        year=year,
                        signed=amount,
                        range_=(a, b),
                        **common,
                    )
                )
        self.committed_through = horizon
        return out

    def accrue(self, book: StreamBook, *, today: dt.date, event_at: dt.datetime) -> list[Transfer]:
        """Post the nights before ``today`` (and before the end), one step per month, as if the job had
        run on each month's first day: the result does not depend on when, or how often, it runs."""
        stay_end = self.stay_end
        limit = today if stay_end is None else min(today, stay_end)
        out: list[Transfer] = []
        if limit <= self.accrued_through:
            return out
        points = {limit, *month_starts_between(self.accrued_through, limit)}
        if self.planned_end is not None and self.accrued_through < self.planned_end < limit:
            points.add(self.planned_end)
        for t in sorted(points):
            a = self.accrued_through
            cause = f"accrual-run:{self.id}:{self.epoch}:{a.isoformat()}"
            out += self.reconcile(book, today=a, cause=cause, natural=a, event_at=event_at)
            year = fy_of(a)
            for funder, amount in sorted(self.schedule.funder_cost(a, t, self.shares).items()):
                if not amount:
                    continue
                open_ = book.open.get((funder, year), [])
                if len(open_) != 1 or abs(open_[0].remaining) < abs(amount) or (open_[0].remaining > 0) != (amount > 0):
                    raise LedgerError(f"{self.id}: nights {a} to {t} of {funder} are not covered by one commitment")
                out.append(
                    self._transfer(
                        book,
                        id=transfer_id("accrual", self.id, funder, a, t, self.epoch),
                        kind=TransferKind.POST_PENDING,
                        purpose="accrual",
                        funder=funder,
                        year=year,
                        signed=amount,
                        natural=t,
                        event_at=event_at,
                        cause=cause,
                        range_=(a, t),
                        commitment=open_[0],
                    )
                )
            self.accrued_through = t
        return out

    def problems(self, book: StreamBook) -> list[str]:
        """Where the ledger disagrees with the terms (empty when consistent)."""
        out: list[str] = []
        spent = self.schedule.funder_cost_by_fy(self.start, self.accrued_through, self.shares)
        if {k: v for k, v in spent.items() if v} != {k: v for k, v in book.spend.items() if v}:
            out.append(f"{self.id}: spend {book.spend} != schedule to {self.accrued_through} {spent}")
        through = max(self.committed_through, self.accrued_through)
        whole = self.schedule.funder_cost_by_fy(self.start, through, self.shares)
        held = dict(book.spend)
        for k, v in book.open_total().items():
            held[k] = held.get(k, 0) + v
        if {k: v for k, v in whole.items() if v} != {k: v for k, v in held.items() if v}:
            out.append(f"{self.id}: spend + commitment {held} != schedule to {through} {whole}")
        return out
