"""Use cases: each handler is ``async def handler(event, uow) -> None`` and works through the
unit of work (``ports.ReferralsUnitOfWork``): its repositories, its configuration, the outbox and
the parking lot. The jobs' use cases take the unit of work alone. ``HANDLERS`` is the one table."""

from __future__ import annotations

import datetime as dt

from homeward.contracts import Event
from homeward.contracts.events import (
    BedAvailabilityUpdated,
    LocalCapacityChanged,
    PlacementRegistered,
    ReferralReceived,
    ReferralWaitBreached,
    ReferralWithdrawn,
)
from homeward.contracts.vocab import BedType
from homeward.kit.identity import stable_id
from homeward.kit.logging import get_logger
from homeward.kit.pseudonym import patient_ref
from homeward.kit.uow import handler_table
from prometheus_client import Counter

from .domain.model import BedCount, Placement, PlacementOutcome, Referral, Refused, Withdrawal
from .domain.rules import (
    area_total,
    breached_thresholds,
    is_newer,
    may_report_beds,
    may_send_referral,
    rank_local_options,
    triage_basis,
)
from .ports import ReferralsUnitOfWork

log = get_logger(__name__)

CAPACITY_UPDATES = Counter(
    "homeward_referrals_capacity_updates_total", "Bed availability updates, by outcome (accepted or stale)", ["outcome"]
)
RETRIAGED = Counter(
    "homeward_referrals_retriaged_total", "Referrals triaged again because a count for their time arrived after them"
)
WITHDRAWALS = Counter(
    "homeward_referrals_withdrawals_total", "ReferralWithdrawn events, by what they did to a referral", ["outcome"]
)
PLACEMENTS_SEEN = Counter(
    "homeward_referrals_placements_total", "PlacementRegistered events, by what they did to a referral", ["outcome"]
)

REFERRAL_UNKNOWN = "referral-unknown"


def awaiting(referral_id: str) -> str:
    """The parking lot's key for what waits for a referral."""
    return f"referral:{referral_id}"


# ------------------------------------------------------------------------------------ referrals


async def referral_received(event: Event[ReferralReceived], uow: ReferralsUnitOfWork) -> None:
    r = event.data
    reference = uow.config.reference
    commissioner_area = reference.commissioner_area(r.commissioner)
    if not may_send_referral(event.organisation, r.commissioner, reference.providers_in(commissioner_area)):
        raise Refused(
            "not-party",
            f"organisation {event.organisation} may not refer for commissioner {r.commissioner}: only the commissioner "
            f"or a provider with a site in its area ({commissioner_area}) may",
        )
    home_area = r.home_area or commissioner_area
    referral = Referral(
        referral_id=r.referral_id,
        patient_ref=patient_ref(r.nhs_number, uow.config.patient_ref_key),
        commissioner=r.commissioner,
        home_area=home_area,
        bed_type=r.bed_type,
        cohort=r.cohort,
        age_band=r.age_band,
        urgency=r.urgency,
        legal_status=r.legal_status,
        need_arose_at=r.need_arose_at,
        received_at=event.time,
    )
    existing = await uow.referrals.get(r.referral_id)
    if existing is not None:
        if existing.same_request(referral):
            log.debug("referral received again with the same content; nothing to do", referral_id=r.referral_id)
            return
        if existing.commissioner != referral.commissioner:
            raise Refused("conflict", f"referral id {r.referral_id} is already used by another commissioner")
        raise Refused(
            "conflict", f"referral {r.referral_id} was already received with different content; use a new referral id"
        )

    if not await uow.capacity.try_lock_triage(home_area, r.bed_type):
        # A count for this area may be being recorded right now, unseen by us (and we by it):
        # the capacity job triages again once both have committed.
        await uow.capacity.mark_triage_unsettled(home_area, r.bed_type, event.time)
    await _triage(referral, event.time, uow)
    await uow.referrals.add(referral)
    log.debug("referral triaged", referral_id=referral.referral_id, local_options=len(referral.local_options))
    # Withdrawals and placements that came first, oldest fact first.
    await uow.retry_parked(awaiting(referral.referral_id))


async def _triage(referral: Referral, at: dt.datetime, uow: ReferralsUnitOfWork) -> bool:
    """Triage the referral on the counts as stated at ``at``; True if they changed (the referral
    then records a ReferralTriaged superseding the one before)."""
    counts = await uow.capacity.as_of(referral.home_area, referral.bed_type, at)
    options = rank_local_options(referral.home_area, referral.bed_type, counts)
    return referral.triage(options, at, stable_id("ReferralTriaged", referral.referral_id, triage_basis(counts)))


async def retriage(uow: ReferralsUnitOfWork, area: str, bed_type: BedType, site: str | None, since: dt.datetime) -> int:
    """Triage again the referrals a count taken at ``since`` can change (of ``site``, or of any
    site when None); each whose counts changed records a ReferralTriaged superseding the one
    before. Closed and withdrawn referrals too: the record of what was locally available at the
    time is what unmet-need reviews read, and it must not depend on arrival order."""
    changed = 0
    for referral in await uow.referrals.triaged_with(area, bed_type, site, since):
        assert referral.triaged_as_of is not None
        if not await _triage(referral, referral.triaged_as_of, uow):
            continue
        await uow.referrals.save_triage(referral)
        RETRIAGED.inc()
        changed += 1
        log.debug(
            "referral triaged again: a count for its time arrived after it",
            referral_id=referral.referral_id,
            local_options=len(referral.local_options),
        )
    return changed


async def settle_triage(uow: ReferralsUnitOfWork) -> int:
    """Triage again the referrals of areas where a referral and a count were handled at once."""
    changed = 0
    for area, bed_type in await uow.capacity.triage_unsettled():
        await uow.capacity.lock_triage(area, bed_type)
        since = await uow.capacity.settle_triage(area, bed_type)
        if since is not None:
            changed += await retriage(uow, area, bed_type, None, since)
    return changed


# ---------------------------------------------------------------------------------- withdrawals


async def referral_withdrawn(event: Event[ReferralWithdrawn], uow: ReferralsUnitOfWork) -> None:
    w = event.data
    reference = uow.config.reference
    commissioner_area = reference.commissioner_area(w.commissioner)
    if not may_send_referral(event.organisation, w.commissioner, reference.providers_in(commissioner_area)):
        raise Refused(
            "not-party",
            f"organisation {event.organisation} may not withdraw a referral of commissioner {w.commissioner}: only the "
            f"commissioner or a provider with a site in its area ({commissioner_area}) may",
        )
    referral = await uow.referrals.get(w.referral_id)
    if referral is None:
        if await uow.park(event, awaiting=awaiting(w.referral_id), reason=REFERRAL_UNKNOWN):
            WITHDRAWALS.labels("parked").inc()
            log.debug("withdrawal parked until its referral arrives", referral_id=w.referral_id)
        return
    if referral.commissioner != w.commissioner:
        WITHDRAWALS.labels("refused").inc()
        raise Refused("not-party", f"referral {w.referral_id} belongs to another commissioner")
    withdrawal = Withdrawal(
        referral_id=w.referral_id,
        commissioner=w.commissioner,
        withdrawn_at=w.withdrawn_at,
        reason=w.reason,
        event_id=event.id,
        organisation=event.organisation or "",
    )
    standing = withdrawal if referral.withdrawal is None else referral.withdrawal.earlier_of(withdrawal)
    if standing == referral.withdrawal:
        WITHDRAWALS.labels("unchanged").inc()
        log.debug("referral already withdrawn at or before this", referral_id=referral.referral_id)
        return
    referral.withdrawal = standing
    await uow.referrals.save_withdrawal(referral)
    WITHDRAWALS.labels("placed" if referral.placement is not None else "withdrawn").inc()
    log.debug("referral withdrawn", referral_id=referral.referral_id, already_placed=referral.placement is not None)


# ------------------------------------------------------------------------------------- capacity


async def bed_availability_updated(event: Event[BedAvailabilityUpdated], uow: ReferralsUnitOfWork) -> None:
    b = event.data
    if not may_report_beds(event.organisation, b.provider):
        raise Refused("not-party", f"organisation {event.organisation} may not report beds for provider {b.provider}")
    known = uow.config.reference.sites.get(b.site)
    if known is not None and known.provider != b.provider:
        raise Refused("not-party", f"site {b.site} belongs to provider {known.provider} in the reference data")
    if known is not None and known.area != b.site_area:
        raise Refused("conflict", f"site {b.site} lies in area {known.area} in the reference data, not {b.site_area}")
    update = BedCount(
        site=b.site,
        provider=b.provider,
        area=b.site_area,
        bed_type=b.bed_type,
        available_beds=b.available_beds,
        total_beds=b.total_beds,
        as_of=b.as_of,
    )
    held = await uow.capacity.held(b.site, b.bed_type)
    accepted = is_newer(update, held)
    await uow.capacity.record(event.id, update, accepted)
    # Even a stale count was true at its own time: referrals made between it and the next count
    # of the site are triaged on it.
    for area in await uow.capacity.areas_of(b.site, b.bed_type):
        if await uow.capacity.try_lock_triage(area, b.bed_type):
            await retriage(uow, area, b.bed_type, b.site, b.as_of)
        else:
            await uow.capacity.mark_triage_unsettled(area, b.bed_type, b.as_of)
    if not accepted:
        CAPACITY_UPDATES.labels("stale").inc()
        log.debug(
            "stale bed count ignored",
            site=b.site,
            bed_type=b.bed_type.value,
            as_of=b.as_of.isoformat(),
            held_as_of=held.as_of.isoformat() if held else None,
        )
        return
    await uow.capacity.save(update)
    CAPACITY_UPDATES.labels("accepted").inc()
    for area in sorted({update.area} | ({held.area} if held is not None else set())):
        if await uow.capacity.try_lock_area(area, b.bed_type):
            event_id = stable_id("LocalCapacityChanged", area, b.bed_type.value, update.site, update.as_of.isoformat())
            await _publish_area_total(uow, area, b.bed_type, event_id, update.as_of)
        else:
            # Another transaction is publishing this area's total and cannot see our change:
            # leave a note for the capacity job rather than wait (waiting could deadlock batches).
            await uow.capacity.mark_unsettled(area, b.bed_type)
            log.debug("area total left to the capacity job", area=area, bed_type=b.bed_type.value)


async def _publish_area_total(
    uow: ReferralsUnitOfWork, area: str, bed_type: BedType, event_id: str, when: dt.datetime
) -> bool:
    """Publish an area's total; its ``as_of`` is the freshest count in it (``when`` if none is left)."""
    counts = await uow.capacity.in_area(area, bed_type)
    as_of = max((c.as_of for c in counts), default=when)
    total = LocalCapacityChanged(area=area, bed_type=bed_type, available_beds=area_total(counts), as_of=as_of)
    return await uow.publish(total, id=event_id)


async def settle_capacity(uow: ReferralsUnitOfWork) -> int:
    """Publish the totals of areas whose change a concurrent transaction could not see."""
    published = 0
    for area, bed_type in await uow.capacity.unsettled():
        await uow.capacity.lock_area(area, bed_type)
        last_note = await uow.capacity.settle(area, bed_type)
        if last_note is None:
            continue  # another replica settled it while we waited
        event_id = stable_id("LocalCapacityChanged", area, bed_type.value, "settled", last_note)
        if await _publish_area_total(uow, area, bed_type, event_id, uow.clock.now()):
            published += 1
    return published


# ----------------------------------------------------------------------------------- placements


async def placement_registered(event: Event[PlacementRegistered], uow: ReferralsUnitOfWork) -> None:
    p = event.data
    if p.referral_id is None:
        PLACEMENTS_SEEN.labels("no-referral").inc()
        return
    referral = await uow.referrals.get(p.referral_id)
    if referral is None:
        if await uow.park(event, awaiting=awaiting(p.referral_id), reason=REFERRAL_UNKNOWN):
            PLACEMENTS_SEEN.labels("parked").inc()
            log.debug(
                "placement parked until its referral arrives", referral_id=p.referral_id, placement_id=p.placement_id
            )
        return
    placement = Placement(
        placement_id=p.placement_id,
        referral_id=p.referral_id,
        commissioner=p.commissioner,
        provider=p.provider,
        site=p.provider_site,
        site_area=p.provider_site_area,
        bed_type=p.bed_type,
        start_date=p.start_date,
        out_of_area=p.out_of_area,
        out_of_area_reason=p.out_of_area_reason,
    )
    outcome = referral.place(placement)
    if outcome is PlacementOutcome.CLOSED and not await uow.referrals.save_placement(referral):
        referral.take_events()  # closed meanwhile by a concurrent transaction: not this placement's to report
        outcome = PlacementOutcome.ANSWERED_BY_ANOTHER
    PLACEMENTS_SEEN.labels(outcome.value).inc()
    if outcome is PlacementOutcome.WRONG_COMMISSIONER:
        raise Refused(
            "not-party",
            f"placement {p.placement_id} of commissioner {p.commissioner} names referral {p.referral_id} "
            "of another commissioner",
        )
    if outcome is PlacementOutcome.ANSWERED_BY_ANOTHER:
        log.warning(
            "referral was already closed by another placement; this one is not counted against it",
            referral_id=referral.referral_id,
            placement_id=placement.placement_id,
        )
    elif outcome is PlacementOutcome.CLOSED:
        log.debug(
            "referral closed by placement",
            referral_id=referral.referral_id,
            placement_id=placement.placement_id,
            out_of_area=placement.out_of_area,
            waited_hours=referral.waited_hours,
        )


async def retry_arrived(uow: ReferralsUnitOfWork, limit: int = 1) -> int:
    """Retry what is parked for referrals that exist now; how many referrals were taken up.

    This catches a referral and an event about it handled at the same moment by the two
    consumers, each unable to see the other's uncommitted work."""
    referral_ids = await uow.referrals.arrived_while_parked(limit)
    for referral_id in referral_ids:
        await uow.retry_parked(awaiting(referral_id))
    return len(referral_ids)


# ---------------------------------------------------------------------------------------- waits


async def report_wait_breaches(uow: ReferralsUnitOfWork) -> int:
    """Report each wait threshold an open referral has reached by now, once per (referral, threshold)."""
    now = uow.clock.now()
    thresholds = uow.config.wait_thresholds_hours
    emitted = 0
    for referral in await uow.referrals.open_at(now):
        for threshold in breached_thresholds(referral.need_arose_at, thresholds.get(referral.urgency, ()), now):
            event_id = stable_id("ReferralWaitBreached", referral.referral_id, threshold)
            breached_at = referral.need_arose_at + dt.timedelta(hours=threshold)
            if not await uow.referrals.record_breach(referral.referral_id, threshold, breached_at, event_id):
                continue
            payload = ReferralWaitBreached(
                referral_id=referral.referral_id,
                patient_ref=referral.patient_ref,
                commissioner=referral.commissioner,
                bed_type=referral.bed_type,
                urgency=referral.urgency,
                waiting_since=referral.need_arose_at,
                threshold_hours=threshold,
                waited_hours=referral.wait_hours(now),
            )
            if await uow.publish(payload, id=event_id, time=breached_at):
                emitted += 1
    return emitted


HANDLERS = handler_table(
    {
        ReferralReceived: referral_received,
        ReferralWithdrawn: referral_withdrawn,
        BedAvailabilityUpdated: bed_availability_updated,
        PlacementRegistered: placement_registered,
    },
    refusals=(Refused,),
)
