"""Use cases: each consumed event, and the accrual job, as a change to the ledger.

Every use case first locks what it may write (the commissioners whose ledger it posts to, the
placement, and for an invoice the invoice: ``domain/locks.py``), reads the stream it changes,
lets the domain plan the transfers, posts them, and then marks every commissioner and year
whose forecast may have moved; the thresholds job (``check_moved_thresholds``) judges their
thresholds from the running totals that ``post`` keeps, on the ledger as it then stands.
When what to lock is known only from the stream (a rate change, a closure, an accrual),
it reads the stream, locks, and reads it again. Events are published only through the outbox
(``uow.publish``) or recorded by an invoice (``Invoice.held``, ``Invoice.matched``), with
deterministic ids; the kit's unit of work dates each by the event that caused it.

Each handler is a plain function ``(event, uow)``, registered in ``HANDLERS``; ``uow`` is a
``BudgetUnitOfWork`` (``ports.py``): ``uow.ledger``, ``uow.config``, the clock, the outbox and the
kit's parking lot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, cast

from homeward.contracts import Event, source_service
from homeward.contracts.access import PRINCIPAL_EXTENSION
from homeward.contracts.events import (
    BudgetAllocated,
    BudgetThresholdBreached,
    InvoiceConfirmed,
    InvoiceReceived,
    PatientRepatriated,
    PlacementClosed,
    PlacementRateChanged,
    PlacementRegistered,
    RepatriationCorrected,
)
from homeward.contracts.plausibility import RateBounds, daily_rate_outside, per_night
from homeward.contracts.vocab import BedType, Programme
from homeward.kit.consumer import Rejected
from homeward.kit.identity import stable_id
from homeward.kit.logging import get_logger
from homeward.kit.uow import handler_table

from .domain.authority import SERVICE_PRINCIPAL, Assertion, may_act_for
from .domain.calendar import fy_end, fy_label, parse_fy, twelve_months_from
from .domain.invoices import accrued_for_period, assess
from .domain.ledger import AccountKey, AccountKind, LedgerName, Transfer, TransferKind, transfer_id
from .domain.locks import LockKey, commissioner_keys, invoice_key, placement_key, stream_keys
from .domain.money import funding_shares
from .domain.position import by_programme
from .domain.records import Allocation, Invoice, InvoiceStatus
from .domain.schedule import RateSchedule
from .domain.streams import Stream, StreamKind, placement_stream_id, saving_stream_id
from .domain.thresholds import ALL_PROGRAMMES, ThresholdState, evaluate
from .ports import BudgetUnitOfWork

log = get_logger(__name__)


CommissionerYear = tuple[str, int]


def _forecast_keys(transfers: Iterable[Transfer]) -> set[CommissionerYear]:
    """Commissioners and years whose forecast outturn a set of transfers may change (accrual does not)."""
    return {
        (t.debit.commissioner, parse_fy(t.debit.financial_year))
        for t in transfers
        if t.debit.ledger is LedgerName.BUDGET and t.purpose != "accrual"
    }


async def _locked_stream(uow: BudgetUnitOfWork, stream_id: str, keys: set[LockKey]) -> Stream | None:
    """Lock ``keys`` and everything the stream posts to, then read the stream for update.

    What the stream posts to is known only once it is read: read it, lock, and read it again.
    Under its placement's lock nobody else can change it, so the second read is final, unless
    it was registered (or is a different stream) by the time the locks were granted: then lock
    what it names too (keys already held cost nothing)."""
    seen = await uow.ledger.get_stream(stream_id, for_update=False)
    wanted = set(keys) | (stream_keys(seen) if seen is not None else set())
    while True:
        await uow.ledger.lock(wanted)
        stream = await uow.ledger.get_stream(stream_id)
        if stream is None or stream_keys(stream) <= wanted:
            return stream
        wanted |= stream_keys(stream)


def _asserted(uow: BudgetUnitOfWork, transfers: Iterable[Transfer], stream: Stream | None = None) -> list[Transfer]:
    """``transfers`` with who asserted them: the handled event's organisation and principal (a
    parked event's own when it is applied), or, for the accrual job, the organisation that made
    the stream chargeable and the service."""
    who = assertion_of(uow.cause) if uow.cause is not None else None
    if who is None:
        by = str(stream.details.get("asserted_by") or stream.commissioner) if stream is not None else "budget"
        who = Assertion(by, SERVICE_PRINCIPAL)
    return [replace(t, asserted_by=who.organisation, principal=who.principal) for t in transfers]


async def _save_and_post(uow: BudgetUnitOfWork, stream: Stream, transfers: list[Transfer]) -> None:
    await uow.ledger.save_stream(stream)
    await uow.ledger.post(_asserted(uow, transfers, stream))


async def reconcile_stream(
    uow: BudgetUnitOfWork, stream: Stream, *, cause: str, at: dt.datetime
) -> set[CommissionerYear]:
    book = await uow.ledger.stream_book(stream)
    transfers = stream.reconcile(book, today=uow.clock.today(), cause=cause, natural=at.date(), event_at=at)
    await _save_and_post(uow, stream, transfers)
    return _forecast_keys(transfers)


async def check_thresholds(uow: BudgetUnitOfWork, keys: Iterable[CommissionerYear]) -> int:
    """Evaluate every threshold of these commissioners and years against their running totals.

    The caller holds these commissioners' locks, so the totals and states read here include
    every committed posting and cannot move until this transaction ends."""
    wanted = sorted(set(keys))
    if not wanted:
        return 0
    labels = [(commissioner, fy_label(year)) for commissioner, year in wanted]
    # One read for every commissioner, year, programme and threshold.
    totals, all_states = await uow.ledger.threshold_inputs(labels)
    emitted = 0
    for (commissioner, year), (_, fy) in zip(wanted, labels, strict=True):
        total, programmes = by_programme(totals.get((commissioner, fy), {}))
        groups = [(ALL_PROGRAMMES, total), *sorted(programmes.items())]
        states = all_states.get((commissioner, fy), {})
        for programme, figures in groups:
            for percent in uow.config.thresholds_percent:
                state = states.get((programme, percent), ThresholdState())
                new, fire = evaluate(
                    state,
                    figures.allocated,
                    figures.forecast_outturn,
                    percent,
                    uow.config.threshold_rearm_margin_percent,
                    uow.clock.today(),
                )
                if new != state:
                    await uow.ledger.save_threshold_state(commissioner, fy, programme, percent, new)
                if not fire or uow.clock.today() >= fy_end(year):
                    continue  # a closed year's outturn is history: nobody can act on an alert about it
                alert = BudgetThresholdBreached(
                    commissioner=commissioner,
                    financial_year=fy,
                    programme=None if programme == ALL_PROGRAMMES else Programme(programme),
                    threshold_percent=percent,
                    allocated_pence=max(figures.allocated, 0),
                    forecast_outturn_pence=max(figures.forecast_outturn, 0),
                    as_of=uow.clock.today(),
                )
                key = stable_id("BudgetThresholdBreached", commissioner, fy, programme, percent, new.arm)
                if await uow.publish(alert, id=key):
                    emitted += 1
                    log.debug(
                        "budget threshold breached",
                        commissioner=commissioner,
                        financial_year=fy,
                        programme=programme,
                        threshold_percent=percent,
                    )
    return emitted


# --------------------------------------------------------------------------- allocations


async def allocate(event: Event[BudgetAllocated], uow: BudgetUnitOfWork) -> None:
    d = event.data
    if not may_act_for(event.organisation, d.commissioner, uow.config.delegations):
        raise Rejected(
            "not-authorised",
            f"organisation {event.organisation} may not allocate or change {d.commissioner}'s budget: only "
            f"{d.commissioner} itself or the lead commissioner it has delegated to may (the source_organisation "
            "named in an allocation is recorded, and gives no right to send it)",
        )
    try:
        year = parse_fy(d.financial_year)
    except ValueError as exc:
        raise Rejected("invalid-financial-year", str(exc)) from exc
    await uow.ledger.lock(commissioner_keys([d.commissioner]))
    new = Allocation(
        commissioner=d.commissioner,
        allocation_id=d.allocation_id,
        financial_year=fy_label(year),
        programme=d.programme.value,
        amount=d.amount_pence,
        source=d.source.value,
        source_organisation=d.source_organisation,
        event_ids=(event.id,),
    )
    old = await uow.ledger.get_allocation(d.commissioner, d.allocation_id)
    if old is not None and event.id in old.event_ids:
        return
    if old is not None and not old.same_budget(new):
        raise Rejected(
            "conflict",
            f"allocation {d.allocation_id} was recorded for another year, programme or source; "
            "send a new allocation_id instead",
        )
    change = d.amount_pence - (old.amount if old else 0)
    if old is not None:
        new = replace(new, event_ids=(*old.event_ids, event.id))
    if change == 0:
        await uow.ledger.save_allocation(new)
        return
    source = AccountKey(
        LedgerName.BUDGET,
        d.commissioner,
        new.financial_year,
        new.programme,
        AccountKind.SOURCE,
        d.source_organisation or d.source.value,
    )
    budget = AccountKey(LedgerName.BUDGET, d.commissioner, new.financial_year, new.programme, AccountKind.BUDGET)
    transfer = Transfer(
        id=transfer_id(event.id, "allocation", d.commissioner, d.allocation_id),
        kind=TransferKind.POSTED,
        debit=source if change > 0 else budget,
        credit=budget if change > 0 else source,
        amount=abs(change),
        purpose="allocation" if old is None else "allocation-revision",
        effective_on=event.time.date(),
        event_at=event.time,
        cause=event.id,
        funder=d.commissioner,
        financial_year=new.financial_year,
        metadata={"allocation_id": d.allocation_id, "source": d.source.value},
    )
    await uow.ledger.post(_asserted(uow, [transfer]))
    await uow.ledger.save_allocation(new)
    await thresholds_moved(uow, {(d.commissioner, year)})


# ---------------------------------------------------------------------------- placements


def _placement_stream(d: PlacementRegistered) -> Stream:
    try:
        shares = funding_shares([(f.commissioner, f.share_bp) for f in d.funding], d.commissioner)
    except ValueError as exc:
        raise Rejected("invalid-funding", str(exc)) from exc
    return Stream(
        id=placement_stream_id(d.placement_id),
        kind=StreamKind.PLACEMENT,
        placement_id=d.placement_id,
        commissioner=d.commissioner,
        programme=d.programme.value,
        provider=d.provider,
        out_of_area=d.out_of_area,
        schedule=RateSchedule.starting(d.start_date, d.daily_rate_pence),
        shares=shares,
        planned_end=d.planned_end_date,
        details={
            "patient_ref": d.patient_ref,
            "provider_site": d.provider_site,
            "provider_site_area": d.provider_site_area,
            "commissioner_area": d.commissioner_area,
            "bed_type": d.bed_type.value,
            "setting": d.setting.value,
            "cohort": d.cohort.value,
            "independent_provider": d.independent_provider,
            "inappropriate": d.inappropriate,
            "asserted_by": d.asserted_by or d.commissioner,
        },
    )


async def register_placement(event: Event[PlacementRegistered], uow: BudgetUnitOfWork) -> None:
    stream = _placement_stream(event.data)
    # The placement's lock is what makes a rate change or closure parked by another replica at
    # the same moment visible to retry_parked below (or this registration visible to it).
    await uow.ledger.lock(stream_keys(stream))
    existing = await uow.ledger.get_stream(stream.id)
    if existing is not None:
        if existing.facts() != stream.facts():
            raise Rejected("conflict", f"placement {stream.placement_id} was registered with other terms")
        return
    keys = await reconcile_stream(uow, stream, cause=event.id, at=event.time)
    # The rate changes and closures that arrived first are applied now, oldest fact first, each
    # asserted by whoever asserted it.
    await uow.retry_parked(awaiting_placement(stream.placement_id))
    stream = await uow.ledger.get_stream(stream.id) or stream
    await _match_invoices(uow, stream)
    await thresholds_moved(uow, keys)


def awaiting_placement(placement_id: str) -> str:
    """What an event parked for a placement the budget has not been told of waits for."""
    return f"placement:{placement_id}"


async def _park_unknown(uow: BudgetUnitOfWork, event: Event[Any], placement_id: str) -> None:
    await uow.park(event, awaiting=awaiting_placement(placement_id), reason="placement-unknown")
    log.debug("event parked until its placement is registered", placement_id=placement_id)


async def thresholds_moved(uow: BudgetUnitOfWork, keys: Iterable[CommissionerYear]) -> None:
    """Leave these commissioners' and years' thresholds to the thresholds job
    (:func:`check_moved_thresholds`), which judges them on the ledger as it then stands."""
    await uow.ledger.thresholds_moved({(commissioner, fy_label(year)) for commissioner, year in keys})


async def check_moved_thresholds(uow: BudgetUnitOfWork, limit: int = 100) -> tuple[int, int]:
    """The thresholds job's step: check the thresholds of up to ``limit`` commissioners and years
    whose forecast moved; (how many were checked, how many alerts were raised).

    Alerts are judged here, on the ledger as it stands, rather than after each event: whether a
    threshold is crossed then depends only on what has been posted, not on the order in which a
    replica read a commissioner's two topics (an allocation raised on one, a placement on the
    other). The commissioners are locked before their marks are taken, in the order handlers
    take them (commissioner, then mark), so a handler posting meanwhile waits or is waited for."""
    marked = await uow.ledger.thresholds_marked(limit)
    if not marked:
        return 0, 0
    await uow.ledger.lock(commissioner_keys({commissioner for commissioner, _ in marked}))
    taken = await uow.ledger.take_thresholds_moved(marked)
    return len(taken), await check_thresholds(uow, {(c, parse_fy(fy)) for c, fy in taken})


async def _change_rate(
    uow: BudgetUnitOfWork, stream: Stream, event: Event[PlacementRateChanged]
) -> set[CommissionerYear]:
    if event.id in stream.applied_events:
        return set()
    d = event.data
    stream.schedule = stream.schedule.with_rate_from(d.effective_date, d.daily_rate_pence)
    stream.applied_events = (*stream.applied_events, event.id)
    return await reconcile_stream(uow, stream, cause=event.id, at=event.time)


async def change_rate(event: Event[PlacementRateChanged], uow: BudgetUnitOfWork) -> None:
    if source_service(event.source) != "placements":
        # A partner's own rate change reaches the budget once placements has checked and re-published it.
        return
    placement_id = event.data.placement_id
    stream = await _locked_stream(uow, placement_stream_id(placement_id), {placement_key(placement_id)})
    if stream is None:
        await _park_unknown(uow, event, placement_id)
        return
    keys = await _change_rate(uow, stream, event)
    await _recheck_invoices(uow, stream)
    await thresholds_moved(uow, keys)


async def _close(uow: BudgetUnitOfWork, stream: Stream, event: Event[PlacementClosed]) -> set[CommissionerYear]:
    if event.id in stream.applied_events:
        return set()
    stream.end = event.data.end_date
    stream.applied_events = (*stream.applied_events, event.id)
    return await reconcile_stream(uow, stream, cause=event.id, at=event.time)


async def close_placement(event: Event[PlacementClosed], uow: BudgetUnitOfWork) -> None:
    placement_id = event.data.placement_id
    stream = await _locked_stream(uow, placement_stream_id(placement_id), {placement_key(placement_id)})
    if stream is None:
        await _park_unknown(uow, event, placement_id)
        return
    keys = await _close(uow, stream, event)
    await _recheck_invoices(uow, stream)
    await thresholds_moved(uow, keys)


async def record_repatriation(event: Event[PatientRepatriated], uow: BudgetUnitOfWork) -> None:
    d = event.data
    try:
        shares = funding_shares([(f.commissioner, f.share_bp) for f in d.funding], d.commissioner)
    except ValueError as exc:
        raise Rejected("invalid-funding", str(exc)) from exc
    stream = Stream(
        id=saving_stream_id(d.from_placement_id),
        kind=StreamKind.SAVING,
        placement_id=d.from_placement_id,
        commissioner=d.commissioner,
        programme=d.programme.value,
        provider="",
        out_of_area=False,
        schedule=RateSchedule.starting(d.repatriated_on, d.from_daily_rate_pence - d.to_daily_rate_pence),
        shares=shares,
        end=twelve_months_from(d.repatriated_on),
        details={
            "patient_ref": d.patient_ref,
            "to_placement_id": d.to_placement_id,
            "from_site": d.from_site,
            "to_site": d.to_site,
            "from_daily_rate_pence": d.from_daily_rate_pence,
            "to_daily_rate_pence": d.to_daily_rate_pence,
            "explicit": d.explicit,
        },
    )
    await uow.ledger.lock(stream_keys(stream))
    existing = await uow.ledger.get_stream(stream.id)
    if existing is not None:
        if (existing.facts(), existing.end) != (stream.facts(), stream.end):
            raise Rejected("conflict", f"the repatriation from {d.from_placement_id} was recorded with other terms")
        return
    await reconcile_stream(uow, stream, cause=event.id, at=event.time)


async def correct_repatriation(event: Event[RepatriationCorrected], uow: BudgetUnitOfWork) -> None:
    """A move home restated with the rates now in force at it (a rate change stated after the move
    took effect on or before it): the saving's daily amount is replaced from the day home, and
    reconciling posts a correction for days already realised and re-commits the rest. The
    correcting transfers name this event as their cause."""
    d = event.data
    stream = await _locked_stream(uow, saving_stream_id(d.from_placement_id), {placement_key(d.from_placement_id)})
    if stream is None:
        # The move itself never reached the budget: the correction states all of it.
        await record_repatriation(cast("Event[PatientRepatriated]", event), uow)
        return
    if event.id in stream.applied_events:
        return
    stream.schedule = stream.schedule.with_rate_from(stream.start, d.from_daily_rate_pence - d.to_daily_rate_pence)
    stream.applied_events = (*stream.applied_events, event.id)
    await reconcile_stream(uow, stream, cause=event.id, at=event.time)
    log.debug(
        "repatriation saving corrected",
        from_placement_id=d.from_placement_id,
        reason=d.reason,
        daily_saving_pence=d.from_daily_rate_pence - d.to_daily_rate_pence,
    )


# ------------------------------------------------------------------------------ invoices


async def receive_invoice(event: Event[InvoiceReceived], uow: BudgetUnitOfWork) -> None:
    d = event.data
    if event.organisation != d.provider:
        raise Rejected("not-party", f"only the invoicing provider {d.provider} may send its invoice")
    # An invoice writes no ledger entry and nothing kept per commissioner: only the invoice and its
    # alert. Its placement's lock orders it against that placement's registration (parking), the
    # invoice's own against another copy of it.
    await uow.ledger.lock({placement_key(d.placement_id), invoice_key(d.provider, d.invoice_id)})
    invoice = Invoice(
        provider=d.provider,
        invoice_id=d.invoice_id,
        commissioner=d.commissioner,
        placement_id=d.placement_id,
        period_start=d.period_start,
        period_end=d.period_end,
        amount=d.amount_pence,
        event_id=event.id,
    )
    old = await uow.ledger.get_invoice(d.provider, d.invoice_id)
    if old is not None:
        if not old.same_claim(invoice):
            raise Rejected("conflict", f"invoice {d.invoice_id} was received before with other figures")
        return
    stream = await uow.ledger.get_stream(placement_stream_id(d.placement_id), for_update=False)
    if stream is None:
        await uow.ledger.save_invoice(invoice)
        log.debug("invoice parked until its placement is registered", placement_id=d.placement_id)
        return
    refusal = _not_party(invoice, stream)
    if refusal:
        raise Rejected("not-party", refusal)
    await _assess_or_hold(uow, invoice, stream)


def _implausible(uow: BudgetUnitOfWork, invoice: Invoice, stream: Stream) -> tuple[int, RateBounds] | None:
    """(amount per night, the bounds) when the invoice asks more per night than is plausible for
    the bed type. Only the upper bound: an invoice below the accrual costs nothing (the variance
    check flags it), and while the budget has not yet heard of a discharge it counts nights to
    the period's end, so a low figure per night may only mean the stay ended earlier. That
    undercount can hide, never invent, an implausible invoice, whichever arrives first."""
    bed_type = stream.details.get("bed_type")
    if not bed_type:
        return None
    # Per night of the stay within the invoiced period: a month's invoice for a stay that began
    # on the 29th covers three nights, not thirty.
    first = max(invoice.period_start, stream.start)
    after = invoice.period_end + dt.timedelta(days=1)
    if stream.stay_end is not None:
        after = min(after, stream.stay_end)
    nightly = per_night(invoice.amount, (after - first).days)
    bounds = daily_rate_outside(uow.config.rate_bounds, str(bed_type), nightly)
    return None if bounds is None or nightly <= bounds.upper_pence else (nightly, bounds)


async def _assess_or_hold(uow: BudgetUnitOfWork, invoice: Invoice, stream: Stream) -> None:
    """Match the invoice against the accrual, unless it is implausible and not yet confirmed:
    then hold it and alert finance (docs/authority.md)."""
    found = _implausible(uow, invoice, stream) if invoice.confirmed_by is None else None
    if found is None:
        await _assess(uow, invoice, stream)
        return
    nightly, bounds = found
    reason = (
        f"£{nightly / 100:,.2f} a night is above the plausible £{bounds.lower_pence / 100:,.2f} to "
        f"£{bounds.upper_pence / 100:,.2f} for {stream.details.get('bed_type')}: held until {invoice.commissioner} "
        "confirms it (InvoiceConfirmed)"
    )
    bed_type = BedType(str(stream.details["bed_type"]))
    await uow.ledger.save_invoice(invoice.held(bed_type=bed_type, nightly=nightly, bounds=bounds, reason=reason))
    log.debug("implausible invoice held for confirmation", invoice_id=invoice.invoice_id, nightly_pence=nightly)


async def confirm_invoice(event: Event[InvoiceConfirmed], uow: BudgetUnitOfWork) -> None:
    """The commissioner confirms an invoice held as implausible: it is matched as any other."""
    d = event.data
    if not may_act_for(event.organisation, d.commissioner, uow.config.delegations):
        raise Rejected(
            "not-authorised",
            f"organisation {event.organisation} may not confirm an invoice to {d.commissioner}: only "
            f"{d.commissioner} or the lead commissioner it has delegated to may",
        )
    await uow.ledger.lock({placement_key(d.placement_id), invoice_key(d.provider, d.invoice_id)})
    invoice = await uow.ledger.get_invoice(d.provider, d.invoice_id)
    if invoice is None:
        raise Rejected("nothing-held", f"no invoice {d.invoice_id} from {d.provider} has been received")
    if (invoice.commissioner, invoice.placement_id, invoice.amount) != (d.commissioner, d.placement_id, d.amount_pence):
        raise Rejected(
            "conflict",
            f"invoice {d.invoice_id} from {d.provider} was received for another commissioner, placement or amount; "
            "a confirmation must name the invoice exactly as it was sent",
        )
    if invoice.confirmed_by is not None:
        return
    confirmed = replace(invoice, confirmed_by=event.organisation)
    if invoice.status is InvoiceStatus.HELD:
        stream = await uow.ledger.get_stream(placement_stream_id(d.placement_id), for_update=False)
        if stream is not None:
            await _assess(uow, confirmed, stream)
            log.debug("held invoice confirmed and matched", invoice_id=d.invoice_id)
            return
    # Parked (its placement is not charged yet): the confirmation applies when it is matched.
    await uow.ledger.save_invoice(confirmed)


def _not_party(invoice: Invoice, stream: Stream) -> str | None:
    if invoice.provider != stream.provider:
        return f"{invoice.provider} is not the provider of placement {invoice.placement_id}"
    if invoice.commissioner not in (stream.commissioner, *stream.funders):
        return f"{invoice.commissioner} does not fund placement {invoice.placement_id}"
    return None


async def _assess(uow: BudgetUnitOfWork, invoice: Invoice, stream: Stream) -> None:
    accrued = accrued_for_period(stream.schedule, stream.stay_end, invoice.period_start, invoice.period_end)
    a = assess(invoice.amount, accrued, uow.config.invoice_tolerance_pence, uow.config.invoice_tolerance_percent)
    await uow.ledger.save_invoice(invoice.matched(a))
    if not a.beyond_tolerance:
        return
    log.debug("invoice variance found", invoice_id=invoice.invoice_id, variance_pence=a.variance)


async def _match_invoices(uow: BudgetUnitOfWork, stream: Stream) -> None:
    for invoice in await uow.ledger.invoices_for_placement(stream.placement_id):
        if invoice.status is not InvoiceStatus.PARKED:
            continue
        refusal = _not_party(invoice, stream)
        if refusal:
            await uow.ledger.save_invoice(replace(invoice, status=InvoiceStatus.REFUSED, reason=refusal))
            log.warning("parked invoice refused", invoice_id=invoice.invoice_id, reason="not-party")
            continue
        await _assess_or_hold(uow, invoice, stream)


async def _recheck_invoices(uow: BudgetUnitOfWork, stream: Stream) -> None:
    for invoice in await uow.ledger.invoices_for_placement(stream.placement_id):
        if invoice.status is InvoiceStatus.MATCHED:
            await _assess(uow, invoice, stream)


# ------------------------------------------------------------------------------- accrual


async def accrue_stream(uow: BudgetUnitOfWork, stream_id: str) -> tuple[int, int]:
    """Accrue one stream up to today; returns (transfers posted, alerts raised)."""
    stream = await _locked_stream(uow, stream_id, set())
    if stream is None:
        return 0, 0
    book = await uow.ledger.stream_book(stream)
    transfers = stream.accrue(book, today=uow.clock.today(), event_at=uow.clock.now())
    if not transfers:
        return 0, 0
    await _save_and_post(uow, stream, transfers)
    return len(transfers), await check_thresholds(uow, _forecast_keys(transfers))


# ----------------------------------------------------------------------- kit handlers


def assertion_of(event: Event[Any]) -> Assertion:
    """Who asserted an event: a partner's organisation as verified from its topic, or, for a
    service's fact, the organisation and principal the service recorded on it."""
    service = source_service(event.source)
    if service is None:
        named = event.extensions.get(PRINCIPAL_EXTENSION)  # set by the ingress (docs/kafka-security.md)
        who = Assertion.of_partner(event.organisation or "unknown")
        return Assertion(who.organisation, str(named)) if named else who
    data = event.data
    by = getattr(data, "asserted_by", None)
    principal = getattr(data, "principal", None)
    return Assertion(by or service, principal or f"service:{service}")


HANDLERS = handler_table(
    {
        BudgetAllocated: allocate,
        InvoiceReceived: receive_invoice,
        InvoiceConfirmed: confirm_invoice,
        PlacementRegistered: register_placement,
        PlacementRateChanged: change_rate,
        PlacementClosed: close_placement,
        PatientRepatriated: record_repatriation,
        RepatriationCorrected: correct_repatriation,
    }
)
