"""In-memory fakes of the budget's ports (the ledger and the unit of work, with its outbox and
parking lot), and event builders, for unit and property tests."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from homeward.budget.domain.ledger import AccountKey, Balance, Book, Transfer
from homeward.budget.domain.locks import LockKey
from homeward.budget.domain.position import Figures, TotalsKey, transfer_figures
from homeward.budget.domain.records import Allocation, Invoice
from homeward.budget.domain.streams import Stream, StreamBook
from homeward.budget.domain.thresholds import ThresholdState
from homeward.budget.handlers import HANDLERS, accrue_stream, check_moved_thresholds
from homeward.budget.ports import BudgetUnitOfWork, Config, LedgerRepository
from homeward.contracts import Event, Payload, new_event, partner_source, service_source
from homeward.contracts.events import (
    BudgetAllocated,
    InvoiceReceived,
    PatientRepatriated,
    PlacementClosed,
    PlacementRateChanged,
    PlacementRegistered,
)
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import Rejected

PATIENT = "pt_" + "ab" * 16


class FakeRepository(LedgerRepository):
    def __init__(self) -> None:
        self.book = Book()
        self.streams: dict[str, Stream] = {}
        self.allocations: dict[tuple[str, str], Allocation] = {}
        self.invoices: dict[tuple[str, str], Invoice] = {}
        self.thresholds: dict[tuple[str, str, str, int], ThresholdState] = {}
        self.moved: dict[tuple[str, str], None] = {}  # marked (commissioner, year), in order
        self.running: dict[TotalsKey, Figures] = {}
        self.locked: list[frozenset[LockKey]] = []  # each lock() call's keys, in order

    async def lock(self, keys: Collection[LockKey]) -> None:
        self.locked.append(frozenset(keys))

    def held(self) -> frozenset[LockKey]:
        return frozenset().union(*self.locked)

    async def get_stream(self, stream_id: str, *, for_update: bool = True) -> Stream | None:
        return copy.deepcopy(self.streams.get(stream_id))

    async def save_stream(self, stream: Stream) -> None:
        self.streams[stream.id] = copy.deepcopy(stream)

    async def stream_book(self, stream: Stream) -> StreamBook:
        book = StreamBook()
        for t in self.book.transfers.values():
            if t.stream_id == stream.id:
                book.record(t)
        return book

    async def streams_to_accrue(self, today: dt.date, after: str, limit: int) -> list[str]:
        due = []
        for sid, s in sorted(self.streams.items()):
            limit_day = today if s.stay_end is None else min(today, s.stay_end)
            if sid > after and s.accrued_through < limit_day:
                due.append(sid)
        return due[:limit]

    async def post(self, transfers: Sequence[Transfer]) -> int:
        new = [t for t in transfers if self.book.post(t)]
        for key, figures in transfer_figures(new).items():
            self.running[key] = self.running.get(key, Figures()) + figures
        return len(new)

    async def totals(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Figures]]:
        out: dict[tuple[str, str], dict[str, Figures]] = {}
        for (c, fy, programme), figures in self.running.items():
            if (c, fy) in keys:
                out.setdefault((c, fy), {})[programme] = figures
        return out

    async def balances(self, commissioner: str, financial_year: str) -> dict[AccountKey, Balance]:
        return {
            k: copy.copy(v)
            for k, v in self.book.accounts.items()
            if k.commissioner == commissioner and k.financial_year == financial_year
        }

    async def get_allocation(self, commissioner: str, allocation_id: str) -> Allocation | None:
        return self.allocations.get((commissioner, allocation_id))

    async def save_allocation(self, allocation: Allocation) -> None:
        self.allocations[(allocation.commissioner, allocation.allocation_id)] = allocation

    async def get_invoice(self, provider: str, invoice_id: str) -> Invoice | None:
        return self.invoices.get((provider, invoice_id))

    async def save_invoice(self, invoice: Invoice) -> None:
        self.invoices[(invoice.provider, invoice.invoice_id)] = invoice
        self.track(invoice)

    async def invoices_for_placement(self, placement_id: str) -> list[Invoice]:
        return [i for i in self.invoices.values() if i.placement_id == placement_id]

    async def threshold_state(
        self, commissioner: str, financial_year: str, programme: str, percent: int
    ) -> ThresholdState:
        return self.thresholds.get((commissioner, financial_year, programme, percent), ThresholdState())

    async def threshold_states(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[tuple[str, int], ThresholdState]]:
        out: dict[tuple[str, str], dict[tuple[str, int], ThresholdState]] = {}
        for (c, fy, p, pc), state in self.thresholds.items():
            if (c, fy) in keys:
                out.setdefault((c, fy), {})[(p, pc)] = state
        return out

    async def save_threshold_state(
        self, commissioner: str, financial_year: str, programme: str, percent: int, state: ThresholdState
    ) -> None:
        self.thresholds[(commissioner, financial_year, programme, percent)] = state

    async def thresholds_moved(self, keys: Collection[tuple[str, str]]) -> None:
        for key in sorted(keys):
            self.moved.setdefault(key, None)

    async def thresholds_marked(self, limit: int) -> list[tuple[str, str]]:
        return list(self.moved)[:limit]

    async def take_thresholds_moved(self, keys: Collection[tuple[str, str]]) -> list[tuple[str, str]]:
        taken = sorted(k for k in keys if k in self.moved)
        for k in taken:
            del self.moved[k]
        return taken


class FakeOutbox:
    """Keeps what was published; like the real outbox, an id is queued once."""

    def __init__(self) -> None:
        self.events: dict[str, Payload] = {}
        self.times: dict[str, dt.datetime] = {}  # when each fact happened, as its event says

    def add(self, payload: Payload, id: str, time: dt.datetime) -> bool:
        if id in self.events:
            return False
        self.events[id], self.times[id] = payload, time
        return True

    def of(self, cls: type[Payload]) -> list[Any]:
        return [p for p in self.events.values() if isinstance(p, cls)]


class FakeUnitOfWork(BudgetUnitOfWork):
    """The budget's unit of work in memory: the fake ledger, the fake outbox, and a parking lot
    that, like the kit's, retries what waits for an aggregate oldest fact first."""

    def __init__(self, h: Harness, cause: Event[Any] | None) -> None:
        clock = FixedClock(dt.datetime.combine(h.today, dt.time(12), tzinfo=dt.UTC))
        super().__init__(None, "budget", clock, cause)  # type: ignore[arg-type]
        self.ledger = h.repo
        self.config = h.config
        self.h = h

    async def publish(
        self, data: Payload, *, id: str | None = None, topic: str | None = None, time: dt.datetime | None = None
    ) -> bool:
        assert id is not None, "the budget publishes every event under a deterministic id"
        when = time or (self.cause.time if self.cause is not None else self.clock.now())
        return self.h.outbox.add(data, id, when)

    async def park(self, event: Event[Any], *, awaiting: str, reason: str) -> bool:
        if any(e.id == event.id for _, e in self.h.parked):
            return False
        self.h.parked.append((awaiting, event))
        return True

    async def retry_parked(self, awaiting: str) -> int:
        waiting = sorted(
            ((i, e) for i, (key, e) in enumerate(self.h.parked) if key == awaiting), key=lambda x: (x[1].time, x[0])
        )
        applied, cause = 0, self.cause
        try:
            for _, event in waiting:
                self.h.parked.remove((awaiting, event))
                self.cause = event
                handler = HANDLERS[type(event.data)]
                try:
                    await handler(event, self)
                except Rejected:
                    self.h.rejected.append(event)
                    continue
                await self.flush()
                applied += 1
        finally:
            self.cause = cause
        return applied


class Harness:
    """A fake ledger, outbox and parking lot with a movable date, for driving the use cases."""

    def __init__(self, today: dt.date, config: Config | None = None) -> None:
        self.repo = FakeRepository()
        self.outbox = FakeOutbox()
        self.parked: list[tuple[str, Event[Any]]] = []  # (what it awaits, the event), as parked
        self.rejected: list[Event[Any]] = []  # parked events refused when retried
        self.today = today
        # Most use-case tests use toy rates (£10 a night); the plausibility tests pass bounds.
        self.config = config or Config(rate_bounds={})

    def uow(self, event: Event[Any] | None = None) -> FakeUnitOfWork:
        """A unit of work handling ``event`` (None: the accrual job's)."""
        return FakeUnitOfWork(self, event)

    async def handle(
        self, handler: Callable[[Any, Any], Awaitable[None]], event: Event[Any], *, thresholds: bool = True
    ) -> None:
        """Handle ``event`` as the kit does: the handler, then what its aggregates recorded; then,
        unless ``thresholds`` is False, the thresholds job, as if it ran right after."""
        uow = self.uow(event)
        await handler(event, uow)
        await uow.flush()
        if thresholds:
            await self.check_thresholds()

    async def check_thresholds(self) -> int:
        """The thresholds job: every marked commissioner and year; the alerts it raised."""
        alerts = 0
        while True:
            uow = self.uow()
            checked, raised = await check_moved_thresholds(uow)
            alerts += raised
            if not checked:
                return alerts

    async def accrue(self, stream_id: str) -> tuple[int, int]:
        """The accrual job's step for one stream: (transfers posted, alerts raised)."""
        uow = self.uow()
        result = await accrue_stream(uow, stream_id)
        await uow.flush()
        return result


_ids = itertools.count(1)


def at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)


def from_placements(payload: Payload, day: dt.date, id: str | None = None) -> Event[Any]:
    return new_event(payload, source=service_source("placements"), time=at(day), id=id or f"evt-{next(_ids)}")


def from_partner(payload: Payload, org: str, day: dt.date, id: str | None = None) -> Event[Any]:
    return new_event(payload, source=partner_source(org), time=at(day), id=id or f"evt-{next(_ids)}")


def registered(
    placement_id: str,
    *,
    start: dt.date,
    rate: int,
    commissioner: str = "05A",
    provider: str = "8Z001",
    out_of_area: bool = True,
    planned_end: dt.date | None = None,
    funding: Sequence[tuple[str, int]] = (),
    programme: str = "mental_health",
) -> PlacementRegistered:
    shares = list(funding) or [(commissioner, 10_000)]
    return PlacementRegistered.model_validate(
        {
            "placement_id": placement_id,
            "patient_ref": PATIENT,
            "commissioner": commissioner,
            "commissioner_area": commissioner,
            "provider": provider,
            "provider_site": provider + "01",
            "provider_site_area": "QXX" if out_of_area else commissioner,
            "bed_type": "adult_acute",
            "setting": "inpatient",
            "cohort": "mental_health",
            "age_band": "adult",
            "legal_status": "mha_s3",
            "programme": programme,
            "start_date": start,
            "planned_end_date": planned_end,
            "daily_rate_pence": rate,
            "out_of_area": out_of_area,
            "inappropriate": out_of_area,
            "funding": [{"commissioner": c, "share_bp": bp} for c, bp in shares],
        },
        strict=False,
    )


def rate_changed(placement_id: str, effective: dt.date, rate: int, previous: int | None = None) -> PlacementRateChanged:
    return PlacementRateChanged.model_validate(
        {
            "placement_id": placement_id,
            "daily_rate_pence": rate,
            "effective_date": effective,
            "previous_daily_rate_pence": previous,
            "commissioner": "05A",
        },
        strict=False,
    )


def closed(placement_id: str, end: dt.date, start: dt.date, commissioner: str = "05A") -> PlacementClosed:
    return PlacementClosed.model_validate(
        {
            "placement_id": placement_id,
            "patient_ref": PATIENT,
            "commissioner": commissioner,
            "provider_site": "8Z00101",
            "end_date": end,
            "end_reason": "transfer",
            "out_of_area": True,
            "length_of_stay_nights": max(0, (end - start).days),
        },
        strict=False,
    )


def repatriated(
    from_id: str,
    *,
    on: dt.date,
    from_rate: int,
    to_rate: int,
    commissioner: str = "05A",
    funding: Sequence[tuple[str, int]] = (),
) -> PatientRepatriated:
    return PatientRepatriated.model_validate(
        {
            "patient_ref": PATIENT,
            "commissioner": commissioner,
            "programme": "mental_health",
            "from_placement_id": from_id,
            "to_placement_id": from_id + "-HOME",
            "from_site": "8Z00101",
            "to_site": "RYG01",
            "from_daily_rate_pence": from_rate,
            "to_daily_rate_pence": to_rate,
            "repatriated_on": on,
            "explicit": False,
            "funding": [{"commissioner": c, "share_bp": bp} for c, bp in funding],
        },
        strict=False,
    )


def allocated(
    commissioner: str,
    amount: int,
    fy: str = "2026-27",
    allocation_id: str = "ALLOC-1",
    programme: str = "mental_health",
) -> BudgetAllocated:
    return BudgetAllocated.model_validate(
        {
            "allocation_id": allocation_id,
            "commissioner": commissioner,
            "financial_year": fy,
            "programme": programme,
            "amount_pence": amount,
            "source": "nhs_england",
        },
        strict=False,
    )


def invoice(
    invoice_id: str,
    placement_id: str,
    first: dt.date,
    last: dt.date,
    amount: int,
    provider: str = "8Z001",
    commissioner: str = "05A",
) -> InvoiceReceived:
    return InvoiceReceived.model_validate(
        {
            "invoice_id": invoice_id,
            "provider": provider,
            "commissioner": commissioner,
            "placement_id": placement_id,
            "period_start": first,
            "period_end": last,
            "amount_pence": amount,
        },
        strict=False,
    )
