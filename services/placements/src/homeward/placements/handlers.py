"""Use cases: each partner fact checked and applied to the register, through the repository port.

A handler is a plain function ``(event, uow)`` registered in ``HANDLERS``: ``uow.placements``
is the register (``placements.ports``), ``uow.config`` the service's rules, ``uow.publish``
queues an outgoing event in the same transaction, ``uow.park`` keeps an event about a placement
not yet known in the kit's parking lot until ``uow.retry_parked`` runs it again. ``Refused``
from the domain becomes the kit's ``Rejected`` (the dead-letter topic, with the reason). Work on one placement is
serialised across replicas by a transaction-scoped lock, and so is repatriation matching for
one person, so two facts arriving at once on different partitions cannot miss each other.
"""

from __future__ import annotations

from typing import Any

from homeward.contracts import Event
from homeward.contracts.access import PRINCIPAL_EXTENSION
from homeward.contracts.events import (
    AmountHeld,
    BedAvailabilityUpdated,
    LocalCapacityChanged,
    PlacementAgreed,
    PlacementClosed,
    PlacementEnded,
    PlacementMade,
    PlacementRateChanged,
    RateConfirmed,
    ReviewCompleted,
)
from homeward.contracts.plausibility import RateBounds, daily_rate_outside
from homeward.contracts.vocab import EndReason, RateChangeReason
from homeward.kit.identity import stable_id
from homeward.kit.logging import get_logger
from homeward.kit.pseudonym import patient_ref
from homeward.kit.uow import handler_table

from .domain import (
    Ending,
    Placement,
    RateChange,
    RateEntry,
    Refused,
    Review,
    SiteFact,
    best_source,
    best_target,
    check_stated,
    corrected,
    correction,
    fact_time,
    may_act_for,
    moved_at,
    partner_principal,
    register,
    repatriation,
    resolve_site_area,
)
from .ports import Config, PlacementsUnitOfWork, patient_key, placement_key

log = get_logger(__name__)

PARKED_REASON = "placement-unknown"


def principal_of(event: Event[Any]) -> str:
    """The principal the ingress named on the event (docs/kafka-security.md), else the one the
    organisation's topic implies."""
    named = event.extensions.get(PRINCIPAL_EXTENSION)
    return str(named) if named else partner_principal(event.organisation or "unknown")


# ------------------------------------------------------------------ PlacementMade


async def placement_made(event: Event[PlacementMade], uow: PlacementsUnitOfWork) -> None:
    made = event.data
    pid = made.placement_id
    parties = {made.commissioner, made.provider, *(f.commissioner for f in made.funding)}
    parties |= _leads(parties, uow.config)
    if event.organisation not in parties:
        raise Refused(
            "not-party",
            f"organisation {event.organisation} is not the commissioner, the provider or a funder of "
            f"placement {pid}, so it may not state it",
        )
    site = uow.config.reference.sites.get(made.provider_site)
    if site is not None and site.provider != made.provider:
        # A provider reports placements at its own sites only (docs/authority.md).
        raise Refused(
            "not-party",
            f"site {made.provider_site} belongs to provider {site.provider} in the reference data, "
            f"not to {made.provider}",
        )
    await uow.placements.lock(placement_key(pid))
    existing = await uow.placements.get(pid)
    stated, configured = made.provider_site_area, uow.config.reference.site_area(made.provider_site)
    # A fact learned from another event only counts when neither is known: read it only then.
    learned = None if stated or configured else await uow.placements.learned_site(made.provider_site)
    site_area = resolve_site_area(stated, configured, learned.area if learned else None)
    if site_area is None and existing is not None:
        site_area = existing.provider_site_area
    if site_area is None:
        raise Refused(
            "unknown-site",
            f"the commissioning area of site {made.provider_site} is not known, so Homeward cannot tell "
            f"whether placement {pid} is out of area: send provider_site_area (the ODS code of the sub-ICB "
            "location or ICB the site lies in) on the PlacementMade",
        )
    ref = patient_ref(made.nhs_number, uow.config.patient_ref_key)
    # The commissioner's own report (or its delegated lead's) is also its agreement to pay.
    agreed = may_act_for(event.organisation, made.commissioner, uow.config.delegations)
    bounds = daily_rate_outside(uow.config.rate_bounds, made.bed_type, made.daily_rate_pence)
    placement = register(
        made,
        patient_ref=ref,
        commissioner_area=uow.config.reference.commissioner_area(made.commissioner),
        site_area=site_area,
        event_id=event.id,
        event_time=event.time,
        policy=uow.config.policy,
        reported_by=event.organisation,
        agreed=agreed,
        rate_held=bounds is not None,
    )
    if existing is not None:
        differences = existing.differences(placement)
        if differences:
            raise Refused(
                "conflict",
                f"placement {pid} is already registered with different {', '.join(differences)}; "
                "a correction needs a new placement id or the original facts",
            )
        if agreed and existing.agree(event.organisation, event.id, made.commissioner, made.daily_rate_pence):
            await uow.placements.save_agreement(existing)
            log.debug("placement agreed by its commissioner's own report", placement_id=pid)
            await _release(existing, uow, event)
            return
        log.debug("placement stated again with the same facts; nothing to do", placement_id=pid)
        return
    if made.provider_site_area is not None:
        await uow.placements.learn_site(
            SiteFact(made.provider_site, made.provider, made.provider_site_area, event.time, "PlacementMade", event.id)
        )
    await uow.placements.lock(patient_key(ref))
    await uow.placements.add(placement, made.nhs_number)
    log.debug(
        "placement registered",
        placement_id=pid,
        commissioner=placement.commissioner,
        out_of_area=placement.out_of_area,
        status=placement.status,
        reviews=[t.value for t in placement.schedules],
    )
    if bounds is not None:
        await _hold_rate(placement, placement.rates[0], bounds, uow)
    await _release(placement, uow, event)
    # What the placement recorded (awaiting agreement) goes out before what the events that
    # waited for it cause: those, applied now, oldest fact first (the kit's parking lot).
    await uow.flush()
    if await uow.retry_parked(placement_key(pid)):
        placement = await uow.placements.get(pid) or placement
    await _match_arrival(placement, uow)


# ------------------------------------------------------------------ authority


def _leads(commissioners: set[str], config: Config) -> set[str]:
    """The lead commissioners these commissioners delegated to."""
    return {config.delegations[c] for c in commissioners if c in config.delegations}


async def _release(placement: Placement, uow: PlacementsUnitOfWork, event: Event[Any]) -> None:
    """Once a placement is chargeable (agreed, at a plausible or confirmed starting rate),
    tell the budget: PlacementRegistered, and any repatriation that waited for it. The
    registration is asserted by the commissioner (or lead) that agreed the placement; when
    that was the event handled now, with the principal it was verified as."""
    if placement.released or not placement.chargeable:
        return
    agreed_by = placement.agreed_by
    assert agreed_by is not None
    principal = principal_of(event) if event.organisation == agreed_by else partner_principal(agreed_by)
    await uow.publish(
        placement.registered_payload(asserted_by=agreed_by, principal=principal),
        id=stable_id("PlacementRegistered", placement.placement_id),
        # The placement is a fact from its start (or from when it was stated, if earlier),
        # however late it reached us: the budget dates its commitment by this.
        time=fact_time(event.time, placement.start_date),
    )
    placement.released = True
    await uow.placements.mark_released(placement.placement_id)
    log.debug("placement chargeable", placement_id=placement.placement_id, agreed_by=placement.agreed_by)
    for move, event_id in await uow.placements.unpublished_repatriations(placement.placement_id):
        other_id = move.to_placement_id if move.from_placement_id == placement.placement_id else move.from_placement_id
        other = await uow.placements.get(other_id)
        if other is None or not other.chargeable:
            continue
        await _publish_repatriation(move, event_id, uow)


async def _correct_repatriations(placement: Placement, uow: PlacementsUnitOfWork, event: Event[Any]) -> None:
    """A rate now in force changes the rates a recorded move was made at: store them, and
    publish a correction of a move already published (an unpublished one is published later
    with the rates it then has)."""
    for move, event_id, published in await uow.placements.repatriations_of(placement.placement_id):
        source = placement if move.from_placement_id == placement.placement_id else None
        target = placement if move.to_placement_id == placement.placement_id else None
        source = source or await uow.placements.get(move.from_placement_id)
        target = target or await uow.placements.get(move.to_placement_id)
        if source is None or target is None:
            continue
        now = corrected(move, source, target)
        if now is None:
            continue
        await uow.placements.correct_repatriation(now)
        log.debug(
            "repatriation rates corrected by a later rate change",
            from_placement_id=move.from_placement_id,
            from_daily_rate_pence=now.from_daily_rate_pence,
            to_daily_rate_pence=now.to_daily_rate_pence,
            published=published,
        )
        if not published:
            continue
        agreed_by = source.agreed_by
        await uow.publish(
            correction(move, now, event_id).model_copy(
                update={
                    "asserted_by": event.organisation,
                    "principal": principal_of(event),
                }
            ),
            id=stable_id("RepatriationCorrected", move.from_placement_id, event.id),
            time=event.time,
        )
        log.debug("repatriation correction published", from_placement_id=move.from_placement_id, agreed_by=agreed_by)


async def _hold_rate(placement: Placement, entry: RateEntry, bounds: RateBounds, uow: PlacementsUnitOfWork) -> None:
    await uow.publish(
        AmountHeld(
            kind="daily_rate",
            placement_id=placement.placement_id,
            commissioner=placement.commissioner,
            provider=placement.provider,
            bed_type=placement.bed_type,
            asserted_by=entry.asserted_by or placement.provider,
            daily_rate_pence=entry.daily_rate_pence,
            lower_pence=bounds.lower_pence,
            upper_pence=bounds.upper_pence,
            effective_date=entry.effective_date,
        ),
        id=stable_id("AmountHeld", "daily_rate", placement.placement_id, entry.event_id),
    )
    log.warning(
        "implausible daily rate held for the commissioner's confirmation",
        placement_id=placement.placement_id,
        daily_rate_pence=entry.daily_rate_pence,
    )


async def placement_agreed(event: Event[PlacementAgreed], uow: PlacementsUnitOfWork) -> None:
    await _about_placement(event, uow)


async def rate_confirmed(event: Event[RateConfirmed], uow: PlacementsUnitOfWork) -> None:
    await _about_placement(event, uow)


async def _apply_agreement(event: Event[PlacementAgreed], uow: PlacementsUnitOfWork, placement: Placement) -> None:
    data = event.data
    assert event.organisation is not None
    if placement.agree(event.organisation, event.id, data.commissioner, data.daily_rate_pence):
        await uow.placements.save_agreement(placement)
        log.debug("placement agreed", placement_id=placement.placement_id, agreed_by=event.organisation)
    await _release(placement, uow, event)


async def _apply_confirmation(event: Event[RateConfirmed], uow: PlacementsUnitOfWork, placement: Placement) -> None:
    data = event.data
    assert event.organisation is not None
    if data.commissioner != placement.commissioner:
        raise Refused(
            "conflict",
            f"placement {placement.placement_id} is {placement.commissioner}'s, not {data.commissioner}'s",
        )
    change = placement.confirm_rate(data.effective_date, data.daily_rate_pence, event.organisation)
    if change is None:
        log.debug("rate already in force; nothing held to confirm", placement_id=placement.placement_id)
        return
    await uow.placements.confirm_rate(placement.placement_id, change.entry)
    log.debug("held rate confirmed", placement_id=placement.placement_id, confirmed_by=event.organisation)
    if change.entry.event_id == placement.registered_event_id:
        await _release(placement, uow, event)
    elif change.outcome == "applied":
        await _publish_rate(placement, change, uow, event)
        await _correct_repatriations(placement, uow, event)


# ------------------------------------------------------------------ facts about a known placement


async def rate_changed(event: Event[PlacementRateChanged], uow: PlacementsUnitOfWork) -> None:
    await _about_placement(event, uow)


async def review_completed(event: Event[ReviewCompleted], uow: PlacementsUnitOfWork) -> None:
    await _about_placement(event, uow)


async def placement_ended(event: Event[PlacementEnded], uow: PlacementsUnitOfWork) -> None:
    await _about_placement(event, uow)


async def _about_placement(event: Event[Any], uow: PlacementsUnitOfWork) -> None:
    pid = event.data.placement_id
    await uow.placements.lock(placement_key(pid))
    placement = await uow.placements.get(pid)
    if placement is None:
        await uow.park(event, awaiting=placement_key(pid), reason=PARKED_REASON)
        log.debug("event parked until its placement is known", placement_id=pid)
        return
    await _apply(event, uow, placement)


async def _apply(event: Event[Any], uow: PlacementsUnitOfWork, placement: Placement) -> None:
    data = event.data
    if isinstance(data, PlacementAgreed | RateConfirmed):
        if not may_act_for(event.organisation, placement.commissioner, uow.config.delegations):
            raise Refused(
                "not-authorised",
                f"organisation {event.organisation} may not agree or confirm for {placement.commissioner}: "
                f"only {placement.commissioner} or the lead commissioner it has delegated to may",
            )
    elif event.organisation not in placement.parties() | _leads(placement.parties(), uow.config):
        raise Refused(
            "not-party",
            f"organisation {event.organisation} is not the commissioner, the provider or a funder of "
            f"placement {placement.placement_id}",
        )
    if isinstance(data, PlacementAgreed):
        await _apply_agreement(event, uow, placement)
    elif isinstance(data, RateConfirmed):
        await _apply_confirmation(event, uow, placement)
    elif isinstance(data, PlacementRateChanged):
        await _apply_rate(event, uow, placement)
    elif isinstance(data, ReviewCompleted):
        await _apply_review(event, uow, placement)
    elif isinstance(data, PlacementEnded):
        await _apply_end(event, uow, placement)
    else:  # pragma: no cover - only the three types above are parked or dispatched here
        raise Refused("unsupported", f"{event.type} is not about a placement")


async def _apply_rate(event: Event[PlacementRateChanged], uow: PlacementsUnitOfWork, placement: Placement) -> None:
    data = event.data
    bounds = daily_rate_outside(uow.config.rate_bounds, placement.bed_type, data.daily_rate_pence)
    change = placement.change_rate(
        data.daily_rate_pence,
        data.effective_date,
        data.reason,
        event.id,
        event.time,
        held=bounds is not None,
        asserted_by=event.organisation,
    )
    if change.outcome == "duplicate":
        log.debug("rate already stated from that date; nothing to do", placement_id=placement.placement_id)
        return
    await uow.placements.add_rate(placement.placement_id, change.entry)
    if change.outcome == "held":
        assert bounds is not None
        await _hold_rate(placement, change.entry, bounds, uow)
        return
    if change.outcome == "superseded":
        log.debug(
            "rate statement recorded; a later statement for the same date stands",
            placement_id=placement.placement_id,
        )
        return
    await _publish_rate(placement, change, uow, event)
    # A plausible rate from the start replaces a held starting rate: an agreed placement is then chargeable.
    await _release(placement, uow, event)
    await _correct_repatriations(placement, uow, event)


async def _publish_rate(placement: Placement, change: RateChange, uow: PlacementsUnitOfWork, event: Event[Any]) -> None:
    """Re-publish a rate in force for the budget. ``event`` made it so: the statement itself, or
    the commissioner's confirmation of a held one. The id comes from the statement either way."""
    entry = change.entry
    await uow.publish(
        PlacementRateChanged(
            placement_id=placement.placement_id,
            daily_rate_pence=entry.daily_rate_pence,
            effective_date=entry.effective_date,
            reason=_rate_reason(entry.reason),
            previous_daily_rate_pence=change.previous_daily_rate_pence,
            commissioner=placement.commissioner,
            asserted_by=event.organisation,
            principal=principal_of(event),
        ),
        id=stable_id("PlacementRateChanged", placement.placement_id, entry.event_id),
        time=event.time,  # when it was stated (or confirmed): a back-dated change corrects from then
    )


async def _apply_review(event: Event[ReviewCompleted], uow: PlacementsUnitOfWork, placement: Placement) -> None:
    data = event.data
    review = Review(data.review_type, data.review_date, data.outcome, data.next_review_due, event.id)
    outcome, schedule = placement.record_review(review)
    if outcome == "duplicate":
        log.debug("review already recorded; nothing to do", placement_id=placement.placement_id)
        return
    await uow.placements.add_review(placement.placement_id, review, schedule)
    log.debug(
        "review recorded",
        placement_id=placement.placement_id,
        review_type=review.review_type.value,
        next_due=schedule.due_date.isoformat() if schedule else None,
    )


async def _apply_end(event: Event[PlacementEnded], uow: PlacementsUnitOfWork, placement: Placement) -> None:
    data = event.data
    ending = Ending(data.end_date, data.end_reason, data.transfer_to_placement_id, event.id)
    if data.end_reason is EndReason.REPATRIATED and data.transfer_to_placement_id is not None:
        target = await uow.placements.get(data.transfer_to_placement_id)
        if target is not None:
            check_stated(placement, target)
    if placement.end(ending) == "duplicate":
        log.debug("end already recorded; nothing to do", placement_id=placement.placement_id)
        return
    await uow.placements.save_ending(placement.placement_id, ending)
    await uow.publish(
        PlacementClosed(
            placement_id=placement.placement_id,
            patient_ref=placement.patient_ref,
            commissioner=placement.commissioner,
            provider_site=placement.provider_site,
            end_date=ending.end_date,
            end_reason=ending.end_reason,
            out_of_area=placement.out_of_area,
            length_of_stay_nights=(ending.end_date - placement.start_date).days,
            asserted_by=event.organisation,
            principal=principal_of(event),
        ),
        id=stable_id("PlacementClosed", placement.placement_id),
        time=fact_time(event.time, ending.end_date),
    )
    log.debug("placement closed", placement_id=placement.placement_id, end_reason=ending.end_reason.value)
    await uow.placements.lock(patient_key(placement.patient_ref))
    await _match_departure(placement, uow)


# ------------------------------------------------------------------ repatriation


async def _match_departure(source: Placement, uow: PlacementsUnitOfWork) -> None:
    ending = source.ending
    assert ending is not None
    if ending.end_reason is EndReason.REPATRIATED and ending.transfer_to_placement_id is not None:
        target = await uow.placements.get(ending.transfer_to_placement_id)
        if target is None:
            log.debug(
                "repatriation stated; waiting for the placement moved to",
                placement_id=source.placement_id,
                to_placement_id=ending.transfer_to_placement_id,
            )
            return
        await _record_repatriation(source, target, uow, explicit=True)
    elif ending.end_reason is EndReason.TRANSFER and source.out_of_area:
        candidates = await uow.placements.arrival_candidates(source.patient_ref)
        target = best_target(source, candidates, uow.config.repatriation_window_days)
        if target is not None:
            await _record_repatriation(source, target, uow, explicit=False)


async def _match_arrival(target: Placement, uow: PlacementsUnitOfWork) -> None:
    for source in await uow.placements.stated_repatriations_to(target.placement_id):
        if source.patient_ref != target.patient_ref:
            log.warning(
                "a stated repatriation names a placement for another person; not counted",
                placement_id=source.placement_id,
                to_placement_id=target.placement_id,
            )
            continue
        if await _record_repatriation(source, target, uow, explicit=True):
            return
    if target.out_of_area:
        return
    sources = await uow.placements.transfer_sources(target.patient_ref)
    matched = best_source(target, sources, uow.config.repatriation_window_days)
    if matched is not None:
        await _record_repatriation(matched, target, uow, explicit=False)


async def _record_repatriation(
    source: Placement, target: Placement, uow: PlacementsUnitOfWork, *, explicit: bool
) -> bool:
    move = repatriation(source, target, explicit=explicit)
    event_id = stable_id("PatientRepatriated", source.placement_id)
    if not await uow.placements.add_repatriation(move, event_id, uow.clock.now()):
        return False
    log.debug(
        "patient repatriated",
        from_placement_id=source.placement_id,
        to_placement_id=target.placement_id,
        explicit=explicit,
    )
    # A saving is reported (and booked) only between placements the commissioner has agreed;
    # otherwise it waits for the agreement (_release).
    if source.chargeable and target.chargeable:
        await _publish_repatriation(move, event_id, uow, source.agreed_by)
    return True


async def _publish_repatriation(
    move: Any, event_id: str, uow: PlacementsUnitOfWork, agreed_by: str | None = None
) -> None:
    if agreed_by is None:
        source = await uow.placements.get(move.from_placement_id)
        agreed_by = source.agreed_by if source is not None else None
    await uow.publish(
        move.payload().model_copy(
            update={
                "asserted_by": agreed_by,
                "principal": partner_principal(agreed_by) if agreed_by else None,
            }
        ),
        id=event_id,
        time=moved_at(move),
    )
    await uow.placements.mark_repatriation_published(move.from_placement_id)


# ------------------------------------------------------------------ reference facts


async def bed_availability_updated(event: Event[BedAvailabilityUpdated], uow: PlacementsUnitOfWork) -> None:
    data = event.data
    if event.organisation != data.provider:
        raise Refused(
            "not-party",
            f"organisation {event.organisation} may not report beds at a site of provider {data.provider}",
        )
    await uow.placements.learn_site(
        SiteFact(data.site, data.provider, data.site_area, data.as_of, "BedAvailabilityUpdated", event.id)
    )


async def local_capacity_changed(event: Event[LocalCapacityChanged], uow: PlacementsUnitOfWork) -> None:
    data = event.data
    await uow.placements.record_capacity(data.area, data.bed_type, data.available_beds, data.as_of, event.id)


def _rate_reason(reason: str) -> RateChangeReason:
    try:
        return RateChangeReason(reason)
    except ValueError:
        return RateChangeReason.OTHER


HANDLERS = handler_table(
    {
        PlacementMade: placement_made,
        PlacementRateChanged: rate_changed,
        ReviewCompleted: review_completed,
        PlacementEnded: placement_ended,
        PlacementAgreed: placement_agreed,
        RateConfirmed: rate_confirmed,
        BedAvailabilityUpdated: bed_availability_updated,
        LocalCapacityChanged: local_capacity_changed,
    },
    refusals=(Refused,),
)
