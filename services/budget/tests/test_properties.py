"""Property-based tests of the domain and use cases (hypothesis, in-memory fakes).

Random sequences of registrations (pooled or not, back-dated or future), rate changes (back-
dated included, some before the placement is known), closures (some revised), repatriations,
invoices, accrual runs and replays of earlier events, on a clock that only moves forward. After
every step the ledger must balance and every stream must agree with its terms; a replay must
change nothing; at the end, once every stay has ended and been accrued, each funder's spend must
equal the rate schedule integrated night by night, computed here independently.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from homeward.budget.domain.locks import commissioner_keys, placement_key
from homeward.budget.domain.money import Share, split_pence
from homeward.budget.domain.position import position
from homeward.budget.domain.streams import placement_stream_id
from homeward.budget.handlers import (
    accrue_stream,
    allocate,
    change_rate,
    close_placement,
    receive_invoice,
    record_repatriation,
    register_placement,
)
from homeward.contracts import Event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fakes import (
    Harness,
    allocated,
    closed,
    from_partner,
    from_placements,
    invoice,
    rate_changed,
    registered,
    repatriated,
)

D0 = dt.date(2026, 1, 1)
FUNDERS = ("05A", "05H", "05R")
PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# ------------------------------------------------------------------------------ splits


@st.composite
def shares(draw: st.DrawFn) -> list[Share]:
    n = draw(st.integers(1, 3))
    cuts = sorted(draw(st.lists(st.integers(1, 9_999), min_size=n - 1, max_size=n - 1, unique=True)))
    points = [0, *cuts, 10_000]
    return [Share(FUNDERS[i], points[i + 1] - points[i]) for i in range(n)]


@PROPERTY_SETTINGS
@given(amount=st.integers(-(10**9), 10**9), split=shares())
def test_pooled_split_sums_exactly_and_each_part_is_within_a_penny_of_its_share(
    amount: int, split: list[Share]
) -> None:
    parts = split_pence(amount, split)
    assert sum(parts.values()) == amount
    for s in split:
        assert abs(parts[s.funder] * 10_000 - amount * s.basis_points) < 10_000


# --------------------------------------------------------------------------- sequences

Op = tuple[str, int, Any]
KINDS = ["register", "register", "rate", "close", "repatriate", "invoice", "accrue", "replay"]


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[int, Op]]:
    ops: list[tuple[int, Op]] = []
    for _ in range(draw(st.integers(1, 14))):
        advance = draw(st.integers(0, 75))
        p = draw(st.integers(0, 2))
        kind = draw(
            st.sampled_from(["register", "register", "rate", "close", "repatriate", "invoice", "accrue", "replay"])
        )
        if kind == "rate":
            arg: Any = (draw(st.integers(-60, 200)), draw(st.integers(0, 90_000)))
        elif kind == "close":
            arg = draw(st.integers(0, 400))
        elif kind == "invoice":
            arg = (draw(st.integers(0, 120)), draw(st.integers(0, 40)), draw(st.integers(0, 3_000_000)))
        elif kind == "replay":
            arg = draw(st.integers(0, 100))
        else:
            arg = None
        ops.append((advance, (kind, p, arg)))
    return ops


@st.composite
def placement_terms(draw: st.DrawFn) -> dict[str, Any]:
    start = D0 + dt.timedelta(days=draw(st.integers(0, 540)))
    planned = draw(st.none() | st.integers(0, 400))
    return {
        "start": start,
        "rate": draw(st.integers(0, 90_000)),
        "planned_end": None if planned is None else start + dt.timedelta(days=planned),
        "funding": [(s.funder, s.basis_points) for s in draw(shares())],
        "registration_lag": draw(st.integers(-30, 60)),
    }


@dataclass
class Model:
    """What the events say, kept independently of the ledger."""

    start: dt.date
    rate: int
    funding: list[tuple[str, int]]
    rates: dict[dt.date, int] = field(default_factory=dict)
    end: dt.date | None = None
    registered: bool = False

    def rate_on(self, day: dt.date) -> int:
        effective = [d for d in self.rates if d <= day]
        return self.rates[max(effective)] if effective else self.rate

    def nightly_cost(self, until: dt.date) -> dict[str, int]:
        """Each funder's cost, night by night, from the start to ``until`` (exclusive)."""
        out = {f: 0 for f, _ in self.funding}
        shares_ = [Share(f, bp) for f, bp in self.funding]
        day = self.start
        while day < until:
            for f, part in split_pence(self.rate_on(day), shares_).items():
                out[f] += part
            day += dt.timedelta(days=1)
        return out


def snapshot(h: Harness) -> tuple[Any, ...]:
    return (
        len(h.repo.book.transfers),
        copy.deepcopy(h.repo.book.accounts),
        len(h.outbox.events),
        copy.deepcopy(h.repo.streams),
        dict(h.repo.invoices),
        dict(h.repo.allocations),
    )


async def assert_consistent(h: Harness) -> None:
    assert h.repo.book.check() == []
    for stream in h.repo.streams.values():
        assert await _problems(h, stream.id) == []


async def _problems(h: Harness, stream_id: str) -> list[str]:
    stream = h.repo.streams[stream_id]
    return stream.problems(await h.repo.stream_book(stream))


async def _locked_what_it_wrote(h: Harness, use_case: Any, *args: Any) -> None:
    """Run a use case and check it locked every commissioner and placement it posted to or parked for."""
    transfers, parked = set(h.repo.book.transfers), len(h.parked)
    h.repo.locked.clear()
    if use_case is accrue_stream:
        await h.accrue(*args)
    else:
        await h.handle(use_case, *args)
    held = h.repo.held()
    for t in (t for tid, t in h.repo.book.transfers.items() if tid not in transfers):
        assert commissioner_keys([t.debit.commissioner, t.credit.commissioner]) <= held, t
        assert t.placement_id is None or placement_key(t.placement_id) in held, t
    for awaiting, _ in h.parked[parked:]:
        assert placement_key(awaiting.removeprefix("placement:")) in held


async def _accrue(h: Harness) -> None:
    for sid in await h.repo.streams_to_accrue(h.today, "", 1000):
        await _locked_what_it_wrote(h, accrue_stream, sid)


@PROPERTY_SETTINGS
@given(terms=st.lists(placement_terms(), min_size=3, max_size=3), ops=operations())
def test_random_sequences_keep_the_ledger_balanced_exact_and_idempotent(
    terms: list[dict[str, Any]], ops: list[tuple[int, Op]]
) -> None:
    asyncio.run(_run_sequence(terms, ops))


async def _run_sequence(terms: list[dict[str, Any]], ops: list[tuple[int, Op]]) -> None:
    h = Harness(D0)
    models = [Model(t["start"], t["rate"], t["funding"]) for t in terms]
    handled: list[tuple[Any, Event[Any]]] = []
    repatriated_ids: set[int] = set()

    async def handle(use_case: Any, event: Event[Any]) -> None:
        await _locked_what_it_wrote(h, use_case, event)
        handled.append((use_case, event))

    await handle(allocate, from_partner(allocated("05A", 50_000_000), "05A", h.today))
    for advance, (kind, i, arg) in ops:
        h.today += dt.timedelta(days=advance)
        m, pid, t = models[i], f"PLC-{i}", terms[i]
        if kind == "register":
            if m.registered:
                continue
            event = registered(pid, start=m.start, rate=m.rate, planned_end=t["planned_end"], funding=m.funding)
            await handle(register_placement, from_placements(event, h.today))
            m.registered = True
        elif kind == "rate":
            offset, rate = arg
            effective = m.start + dt.timedelta(days=offset)
            await handle(change_rate, from_placements(rate_changed(pid, effective, rate), h.today))
            m.rates[max(effective, m.start)] = rate
        elif kind == "close":
            m.end = m.start + dt.timedelta(days=arg)
            await handle(close_placement, from_placements(closed(pid, m.end, m.start), h.today))
        elif kind == "repatriate":
            if i in repatriated_ids:
                continue
            event = repatriated(pid, on=h.today, from_rate=m.rate, to_rate=35_000, funding=m.funding)
            await handle(record_repatriation, from_placements(event, h.today))
            repatriated_ids.add(i)
        elif kind == "invoice":
            first_offset, nights, amount = arg
            first = m.start + dt.timedelta(days=first_offset)
            claim = invoice(f"INV-{len(handled)}", pid, first, first + dt.timedelta(days=nights), amount)
            await handle(receive_invoice, from_partner(claim, "8Z001", h.today))
        elif kind == "accrue":
            await _accrue(h)
        elif kind == "replay" and handled:
            use_case, event = handled[arg % len(handled)]
            before = snapshot(h)
            await h.handle(use_case, event)
            assert snapshot(h) == before, f"replaying {event.type} changed the ledger"
        await assert_consistent(h)
        await _accrue(h)
        await assert_consistent(h)

    # Every stay ends, everything is accrued well past every end and every saving window.
    for i, m in enumerate(models):
        if not m.registered:
            event = registered(
                f"PLC-{i}", start=m.start, rate=m.rate, planned_end=terms[i]["planned_end"], funding=m.funding
            )
            await handle(register_placement, from_placements(event, h.today))
            m.registered = True
        if m.end is None:
            m.end = max(h.today, m.start)
            await handle(close_placement, from_placements(closed(f"PLC-{i}", m.end, m.start), h.today))
    h.today = max(h.today, *(m.end for m in models if m.end)) + dt.timedelta(days=800)
    await _accrue(h)
    await assert_consistent(h)

    for i, m in enumerate(models):
        assert m.end is not None
        want = m.nightly_cost(m.end)
        stream = h.repo.streams[placement_stream_id(f"PLC-{i}")]
        book = await h.repo.stream_book(stream)
        got = {f: sum(v for (g, _), v in book.spend.items() if g == f) for f, _ in m.funding}
        assert got == want, f"placement {i}: spend {got} != schedule {want}"
        assert book.open_total() == {}
        assert sum(got.values()) == sum(
            m.rate_on(m.start + dt.timedelta(days=n)) for n in range((m.end - m.start).days)
        )

    # Savings are fully realised: each equals the daily difference times the days in 12 months.
    for i in repatriated_ids:
        stream = h.repo.streams[f"saving:PLC-{i}"]
        book = await h.repo.stream_book(stream)
        days = (stream.end - stream.start).days if stream.end else 0
        assert sum(book.spend.values()) == stream.schedule.rates[0][1] * days
        assert book.open_total() == {}

    # A full replay of everything, in order, changes nothing.
    before = snapshot(h)
    for use_case, event in handled:
        await h.handle(use_case, event)
    assert snapshot(h) == before

    # The position reads the same ledger: all years' spend adds up to the placements' cost.
    total_spend = sum(
        position(h.repo.book.accounts, f, fy).total.spent
        for f in FUNDERS
        for fy in {k.financial_year for k in h.repo.book.accounts}
    )
    assert total_spend == sum(sum(m.nightly_cost(m.end).values()) for m in models if m.end)
