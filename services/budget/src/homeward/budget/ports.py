"""What the use cases work through: the ledger's repository port (an asyncpg adapter in
production, ``adapters/postgres.py``, and an in-memory fake in the tests), the service's rules
(``Config``) and the unit of work that carries both (``BudgetUnitOfWork``)."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts.plausibility import RateBounds, load_bounds
from homeward.contracts.vocab import BedType
from homeward.kit.uow import Repository, UnitOfWork

from .domain.ledger import AccountKey, Balance, Transfer
from .domain.locks import LockKey
from .domain.position import Figures
from .domain.records import Allocation, Invoice
from .domain.streams import Stream, StreamBook
from .domain.thresholds import ThresholdState

# (commissioner, financial year label)
CommissionerYearLabel = tuple[str, str]


@dataclass(frozen=True)
class Config:
    """The budget's rules, from its settings (``entrypoints/app.py``, ``build_config``)."""

    thresholds_percent: tuple[int, ...] = (90, 100)
    threshold_rearm_margin_percent: int = 5
    invoice_tolerance_pence: int = 100_00
    invoice_tolerance_percent: int = 2
    # commissioner -> the lead commissioner it delegated its budget to (docs/authority.md)
    delegations: Mapping[str, str] = field(default_factory=dict)
    # plausible daily rates per bed type: an invoice's amount per night outside them is held
    rate_bounds: Mapping[BedType, RateBounds] = field(default_factory=load_bounds)


class LedgerRepository(Repository, abc.ABC):
    """The ledger: streams, transfers and balances, allocations, invoices and threshold states.
    ``save_invoice`` tracks the invoice, so what it recorded (an alert) is published."""

    @abc.abstractmethod
    async def lock(self, keys: Collection[LockKey]) -> None:
        """Hold these keys' locks until the transaction ends (see docs/budget.md, Concurrency).

        Takes them in one sorted pass. Keys already held are no-ops, so a use case may lock
        again after reading what else it must lock."""

    @abc.abstractmethod
    async def get_stream(self, stream_id: str, *, for_update: bool = True) -> Stream | None: ...

    @abc.abstractmethod
    async def save_stream(self, stream: Stream) -> None: ...

    @abc.abstractmethod
    async def stream_book(self, stream: Stream) -> StreamBook: ...

    @abc.abstractmethod
    async def streams_to_accrue(self, today: dt.date, after: str, limit: int) -> list[str]:
        """Ids (in order, after ``after``) of streams with nights before ``today`` not yet accrued."""

    @abc.abstractmethod
    async def post(self, transfers: Sequence[Transfer]) -> int:
        """Post in order; a transfer whose id exists is skipped. Returns how many were new.

        Updates the accounts' cached balances and the running totals of every commissioner,
        year and programme by what the new transfers add, in the same transaction."""

    @abc.abstractmethod
    async def totals(self, keys: Collection[CommissionerYearLabel]) -> dict[CommissionerYearLabel, dict[str, Figures]]:
        """The running totals of each (commissioner, financial year), by programme (programmes
        with nothing posted are absent)."""

    @abc.abstractmethod
    async def balances(self, commissioner: str, financial_year: str) -> dict[AccountKey, Balance]:
        """Current (cached) balances of one commissioner's accounts for one year."""

    @abc.abstractmethod
    async def get_allocation(self, commissioner: str, allocation_id: str) -> Allocation | None: ...

    @abc.abstractmethod
    async def save_allocation(self, allocation: Allocation) -> None: ...

    @abc.abstractmethod
    async def get_invoice(self, provider: str, invoice_id: str) -> Invoice | None: ...

    @abc.abstractmethod
    async def save_invoice(self, invoice: Invoice) -> None: ...

    @abc.abstractmethod
    async def invoices_for_placement(self, placement_id: str) -> list[Invoice]: ...

    @abc.abstractmethod
    async def threshold_states(
        self, keys: Collection[CommissionerYearLabel]
    ) -> dict[CommissionerYearLabel, dict[tuple[str, int], ThresholdState]]:
        """Every threshold's state for each (commissioner, financial year), by (programme, percent)."""

    async def threshold_inputs(
        self, keys: Collection[CommissionerYearLabel]
    ) -> tuple[
        dict[CommissionerYearLabel, dict[str, Figures]],
        dict[CommissionerYearLabel, dict[tuple[str, int], ThresholdState]],
    ]:
        """``totals(keys)`` and ``threshold_states(keys)`` together (an adapter may read both at once)."""
        return await self.totals(keys), await self.threshold_states(keys)

    @abc.abstractmethod
    async def save_threshold_state(
        self, commissioner: str, financial_year: str, programme: str, percent: int, state: ThresholdState
    ) -> None: ...

    @abc.abstractmethod
    async def thresholds_moved(self, keys: Collection[tuple[str, str]]) -> None:
        """Mark these (commissioner, financial year) as having a forecast that moved."""

    @abc.abstractmethod
    async def thresholds_marked(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` marked (commissioner, financial year), oldest mark first (not locked)."""

    @abc.abstractmethod
    async def take_thresholds_moved(self, keys: Collection[tuple[str, str]]) -> list[tuple[str, str]]:
        """Unmark these; those that were still marked (another replica may have taken some)."""


class BudgetUnitOfWork(UnitOfWork[Any]):
    """What a budget handler gets: the ledger (``uow.ledger``), the rules (``uow.config``), and
    the kit's clock, outbox and parking lot, all in one transaction."""

    ledger: LedgerRepository
    config: Config
