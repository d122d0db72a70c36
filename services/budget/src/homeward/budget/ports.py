"""The repository port the use cases work through: an asyncpg adapter in production
(``adapters/postgres.py``) and an in-memory fake in the tests."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Collection, Sequence

from .domain.ledger import AccountKey, Balance, Transfer
from .domain.locks import LockKey
from .domain.position import Figures
from .domain.records import Allocation, Invoice
from .domain.streams import Stream, StreamBook
from .domain.thresholds import ThresholdState

# (commissioner, financial year label)
CommissionerYearLabel = tuple[str, str]


class BudgetRepository(abc.ABC):
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
    async def park(self, placement_id: str, event_id: str, event_type: str, event_json: str, reason: str) -> None: ...

    @abc.abstractmethod
    async def take_parked(self, placement_id: str) -> list[str]:
        """Remove and return the placement's parked events (CloudEvents JSON) in arrival order."""

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
