"""Use cases: each takes an event (or the clock, for the scheduler) and works through the
repository ports; publishing goes through the unit of work's outbox."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from homeward.contracts import Event, Payload
from homeward.contracts.events import (
    BedAvailabilityUpdated,
    LocalCapacityChanged,
    LocalCapacityUnavailable,
    LocalOption,
    PlacementRegistered,
    ReferralReceived,
    ReferralTriaged,
    ReferralWaitBreached,
    ReferralWithdrawn,
)
from homeward.contracts.vocab import BedType, Urgency
from homeward.kit.consumer import Handler, Rejected, UnitOfWork, stable_id
from homeward.kit.logging import get_logger
from homeward.kit.pseudonym import patient_ref
from homeward.kit.reference import ReferenceData
from prometheus_client import Counter

from .domain.model import BedCount, Placement, PlacementOutcome, Referral, Withdrawal
from .domain.rules import (
    area_total,
    breached_thresholds,
    is_newer,
    may_report_beds,
    may_send_referral,
    rank_local_options,
    triage_basis,
)
from .ports import CapacityRepository, ReferralRepository, Repositories

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


class Publish(Protocol):
    """Queue an event in the outbox with a deterministic id; ``time`` is when its fact happened
    (the processing clock when None). False if the id was queued before."""

    async def __call__(self, payload: Payload, event_id: str, /, time: dt.datetime | None = None) -> bool: ...


@dataclass(frozen=True)
class Dependencies:
    repositories: Callable[[UnitOfWork[Any]], Repositories]
    reference: ReferenceData
    patient_ref_key: str


def _options(counts: Sequence[BedCount]) -> list[LocalOption]:
    return [
        LocalOption(provider=c.provider, site=c.site, available_beds=c.available_beds, as_of=c.as_of) for c in counts
    ]


async def referral_received(event: Event[ReferralReceived], uow: UnitOfWork[Any], deps: Dependencies) -> None:
    r = event.data
    commissioner_area = deps.reference.commissioner_area(r.commissioner)
    if not may_send_referral(event.organisation, r.commissioner, deps.reference.providers_in(commissioner_area)):
        raise Rejected(
            "not-party",
            f"organisation {event.organisation} may not refer for commissioner {r.commissioner}: only the commissioner "
            f"or a provider with a site in its area ({commissioner_area}) may",
        )
    home_area = r.home_area or commissioner_area
    referral = Referral(
        referral_id=r.referral_id,
        patient_ref=patient_ref(r.nhs_number, deps.patient_ref_key),
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
    repos = deps.repositories(uow)
    existing = await repos.referrals.get(r.referral_id)
    if existing is not None:
        if existing.same_request(referral):
            log.debug("referral received again with the same content; nothing to do", referral_id=r.referral_id)
            return
        if existing.commissioner != referral.commissioner:
            raise Rejected("conflict", f"referral id {r.referral_id} is already used by another commissioner")
        raise Rejected(
            "conflict", f"referral {r.referral_id} was already received with different content; use a new referral id"
        )

    if not await repos.capacity.try_lock_triage(home_area, r.bed_type):
        # A count for this area may be being recorded right now, unseen by us (and we by it):
        # the capacity job triages again once both have committed.
        await repos.capacity.mark_triage_unsettled(home_area, r.bed_type, event.time)
    await _triage(referral, event.time, repos)
    await repos.referrals.add(referral)
    await _publish_triage(referral, None, _publisher(uow))
    log.debug("referral triaged", referral_id=referral.referral_id, local_options=len(referral.local_options))

    withdrawal = await repos.referrals.take_parked_withdrawal(referral.referral_id)
    if withdrawal is not None:
        await _apply_withdrawal(referral, withdrawal, repos.referrals, parked=True)
    for placement in await repos.referrals.parked(referral.referral_id):
        await _apply_parked(referral, placement, _publisher(uow), repos.referrals)


async def _triage(referral: Referral, at: dt.datetime, repos: Repositories) -> bool:
    """Set the referral's local options from the counts as stated at ``at``; True if they (or
    the counts they were made from) changed."""
    counts = await repos.capacity.as_of(referral.home_area, referral.bed_type, at)
    triage_id = stable_id("ReferralTriaged", referral.referral_id, triage_basis(counts))
    if triage_id == referral.triage_id:
        return False
    referral.local_options = tuple(rank_local_options(referral.home_area, referral.bed_type, counts))
    referral.triaged_as_of = at
    referral.triage_id = triage_id
    return True


async def _publish_triage(referral: Referral, supersedes: str | None, publish: Publish) -> bool:
    assert referral.triage_id is not None
    return await publish(
        ReferralTriaged(
            referral_id=referral.referral_id,
            patient_ref=referral.patient_ref,
            commissioner=referral.commissioner,
            home_area=referral.home_area,
            bed_type=referral.bed_type,
            cohort=referral.cohort,
            urgency=referral.urgency,
            local_options=_options(referral.local_options),
            capacity_as_of=referral.triaged_as_of,
            supersedes=supersedes,
        ),
        referral.triage_id,
        time=referral.triaged_as_of,
    )


async def retriage(
    repos: Repositories, publish: Publish, area: str, bed_type: BedType, site: str | None, since: dt.datetime
) -> int:
    """Triage again the referrals a count taken at ``since`` can change (of ``site``, or of any
    site when None), publishing a ReferralTriaged that supersedes the one before for each whose
    counts changed. Closed and withdrawn referrals too: the record of what was locally available
    at the time is what unmet-need reviews read, and it must not depend on arrival order."""
    changed = 0
    for referral in await repos.referrals.triaged_with(area, bed_type, site, since):
        before = referral.triage_id
        assert referral.triaged_as_of is not None
        if not await _triage(referral, referral.triaged_as_of, repos):
            continue
        await repos.referrals.save_triage(referral)
        await _publish_triage(referral, before, publish)
        RETRIAGED.inc()
        changed += 1
        log.debug(
            "referral triaged again: a count for its time arrived after it",
            referral_id=referral.referral_id,
            local_options=len(referral.local_options),
        )
    return changed


async def settle_triage(repos: Repositories, publish: Publish) -> int:
    """Triage again the referrals of areas where a referral and a count were handled at once."""
    changed = 0
    for area, bed_type in await repos.capacity.triage_unsettled():
        await repos.capacity.lock_triage(area, bed_type)
        since = await repos.capacity.settle_triage(area, bed_type)
        if since is not None:
            changed += await retriage(repos, publish, area, bed_type, None, since)
    return changed


async def referral_withdrawn(event: Event[ReferralWithdrawn], uow: UnitOfWork[Any], deps: Dependencies) -> None:
    w = event.data
    commissioner_area = deps.reference.commissioner_area(w.commissioner)
    if not may_send_referral(event.organisation, w.commissioner, deps.reference.providers_in(commissioner_area)):
        raise Rejected(
            "not-party",
            f"organisation {event.organisation} may not withdraw a referral of commissioner {w.commissioner}: only the "
            f"commissioner or a provider with a site in its area ({commissioner_area}) may",
        )
    withdrawal = Withdrawal(
        referral_id=w.referral_id,
        commissioner=w.commissioner,
        withdrawn_at=w.withdrawn_at,
        reason=w.reason,
        event_id=event.id,
        organisation=event.organisation or "",
    )
    repos = deps.repositories(uow)
    referral = await repos.referrals.get(w.referral_id)
    if referral is None:
        await repos.referrals.park_withdrawal(withdrawal)
        WITHDRAWALS.labels("parked").inc()
        log.debug("withdrawal parked until its referral arrives", referral_id=w.referral_id)
        return
    if referral.commissioner != w.commissioner:
        raise Rejected("not-party", f"referral {w.referral_id} belongs to another commissioner")
    await _apply_withdrawal(referral, withdrawal, repos.referrals, parked=False)


async def _apply_withdrawal(
    referral: Referral, withdrawal: Withdrawal, referrals: ReferralRepository, *, parked: bool
) -> None:
    if referral.commissioner != withdrawal.commissioner:
        problem = f"referral {referral.referral_id} belongs to commissioner {referral.commissioner}"
        log.warning("parked withdrawal refused", referral_id=referral.referral_id)
        await referrals.refuse_parked_withdrawal(withdrawal, problem)
        WITHDRAWALS.labels("refused").inc()
        return
    standing = withdrawal if referral.withdrawal is None else referral.withdrawal.earlier_of(withdrawal)
    if standing == referral.withdrawal:
        WITHDRAWALS.labels("unchanged").inc()
        log.debug("referral already withdrawn at or before this", referral_id=referral.referral_id)
        return
    referral.withdrawal = standing
    await referrals.save_withdrawal(referral)
    WITHDRAWALS.labels("placed" if referral.placement is not None else "withdrawn").inc()
    log.debug(
        "referral withdrawn",
        referral_id=referral.referral_id,
        already_placed=referral.placement is not None,
        from_parked=parked,
    )


async def bed_availability_updated(
    event: Event[BedAvailabilityUpdated], uow: UnitOfWork[Any], deps: Dependencies
) -> None:
    b = event.data
    if not may_report_beds(event.organisation, b.provider):
        raise Rejected("not-party", f"organisation {event.organisation} may not report beds for provider {b.provider}")
    known = deps.reference.sites.get(b.site)
    if known is not None and known.provider != b.provider:
        raise Rejected("not-party", f"site {b.site} belongs to provider {known.provider} in the reference data")
    if known is not None and known.area != b.site_area:
        raise Rejected("conflict", f"site {b.site} lies in area {known.area} in the reference data, not {b.site_area}")
    update = BedCount(
        site=b.site,
        provider=b.provider,
        area=b.site_area,
        bed_type=b.bed_type,
        available_beds=b.available_beds,
        total_beds=b.total_beds,
        as_of=b.as_of,
    )
    repos = deps.repositories(uow)
    held = await repos.capacity.held(b.site, b.bed_type)
    accepted = is_newer(update, held)
    await repos.capacity.record(event.id, update, accepted)
    # Even a stale count was true at its own time: referrals made between it and the next count
    # of the site are triaged on it.
    for area in await repos.capacity.areas_of(b.site, b.bed_type):
        if await repos.capacity.try_lock_triage(area, b.bed_type):
            await retriage(repos, _publisher(uow), area, b.bed_type, b.site, b.as_of)
        else:
            await repos.capacity.mark_triage_unsettled(area, b.bed_type, b.as_of)
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
    await repos.capacity.save(update)
    CAPACITY_UPDATES.labels("accepted").inc()
    for area in sorted({update.area} | ({held.area} if held is not None else set())):
        if await repos.capacity.try_lock_area(area, b.bed_type):
            await _publish_area_total(
                area,
                b.bed_type,
                repos.capacity,
                _publisher(uow),
                stable_id("LocalCapacityChanged", area, b.bed_type.value, update.site, update.as_of.isoformat()),
                update.as_of,
            )
        else:
            # Another transaction is publishing this area's total and cannot see our change:
            # leave a note for the capacity job rather than wait (waiting could deadlock batches).
            await repos.capacity.mark_unsettled(area, b.bed_type)
            log.debug("area total left to the capacity job", area=area, bed_type=b.bed_type.value)


async def _publish_area_total(
    area: str, bed_type: BedType, capacity: CapacityRepository, publish: Publish, event_id: str, when: dt.datetime
) -> bool:
    """Publish an area's total; its ``as_of`` is the freshest count in it (``when`` if none is left)."""
    counts = await capacity.in_area(area, bed_type)
    as_of = max((c.as_of for c in counts), default=when)
    return await publish(
        LocalCapacityChanged(area=area, bed_type=bed_type, available_beds=area_total(counts), as_of=as_of), event_id
    )


async def settle_capacity(capacity: CapacityRepository, publish: Publish, now: dt.datetime) -> int:
    """Publish the totals of areas whose change a concurrent transaction could not see."""
    published = 0
    for area, bed_type in await capacity.unsettled():
        await capacity.lock_area(area, bed_type)
        last_note = await capacity.settle(area, bed_type)
        if last_note is None:
            continue  # another replica settled it while we waited
        event_id = stable_id("LocalCapacityChanged", area, bed_type.value, "settled", last_note)
        if await _publish_area_total(area, bed_type, capacity, publish, event_id, now):
            published += 1
    return published


async def placement_registered(event: Event[PlacementRegistered], uow: UnitOfWork[Any], deps: Dependencies) -> None:
    p = event.data
    if p.referral_id is None:
        PLACEMENTS_SEEN.labels("no-referral").inc()
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
    repos = deps.repositories(uow)
    referral = await repos.referrals.get(p.referral_id)
    if referral is None:
        if await repos.referrals.park(placement):
            PLACEMENTS_SEEN.labels("parked").inc()
            log.debug(
                "placement parked until its referral arrives", referral_id=p.referral_id, placement_id=p.placement_id
            )
        return
    outcome = await _apply_placement(referral, placement, _publisher(uow), repos.referrals)
    if outcome is PlacementOutcome.WRONG_COMMISSIONER:
        raise Rejected(
            "not-party",
            f"placement {p.placement_id} of commissioner {p.commissioner} names referral {p.referral_id} "
            "of another commissioner",
        )


async def _apply_placement(
    referral: Referral, placement: Placement, publish: Publish, referrals: ReferralRepository
) -> PlacementOutcome:
    outcome = referral.place(placement)
    if outcome is PlacementOutcome.CLOSED and not await referrals.save_placement(referral):
        outcome = PlacementOutcome.ANSWERED_BY_ANOTHER  # closed meanwhile by a concurrent transaction
    PLACEMENTS_SEEN.labels(outcome.value).inc()
    if outcome is PlacementOutcome.ANSWERED_BY_ANOTHER:
        log.warning(
            "referral was already closed by another placement; this one is not counted against it",
            referral_id=referral.referral_id,
            placement_id=placement.placement_id,
        )
    if outcome is not PlacementOutcome.CLOSED:
        return outcome
    log.debug(
        "referral closed by placement",
        referral_id=referral.referral_id,
        placement_id=placement.placement_id,
        out_of_area=placement.out_of_area,
        waited_hours=referral.waited_hours,
    )
    if placement.out_of_area:
        await publish(
            LocalCapacityUnavailable(
                referral_id=referral.referral_id,
                placement_id=placement.placement_id,
                commissioner=referral.commissioner,
                home_area=referral.home_area,
                bed_type=referral.bed_type,
                cohort=referral.cohort,
                placed_site=placement.site,
                placed_on=placement.start_date,
                out_of_area_reason=placement.out_of_area_reason,
                waited_hours=referral.waited_hours or 0,
            ),
            stable_id("LocalCapacityUnavailable", referral.referral_id, placement.placement_id),
            time=placement.placed_at,
        )
    return outcome


async def _apply_parked(
    referral: Referral, placement: Placement, publish: Publish, referrals: ReferralRepository
) -> PlacementOutcome:
    outcome = await _apply_placement(referral, placement, publish, referrals)
    if outcome is PlacementOutcome.WRONG_COMMISSIONER:
        problem = f"referral {referral.referral_id} belongs to commissioner {referral.commissioner}"
        log.warning("parked placement refused", referral_id=referral.referral_id, placement_id=placement.placement_id)
        await referrals.refuse_parked(referral.referral_id, placement.placement_id, problem)
    else:
        await referrals.unpark(referral.referral_id, placement.placement_id)
    return outcome


async def apply_parked_placements(referrals: ReferralRepository, publish: Publish, limit: int = 100) -> int:
    """Apply parked placements whose referral has arrived since; returns how many were handled.

    This catches a referral and its placement handled at the same moment by the two consumers,
    each unable to see the other's uncommitted work."""
    handled = 0
    for placement in await referrals.parked_with_referral(limit):
        referral = await referrals.get(placement.referral_id)
        if referral is not None:
            await _apply_parked(referral, placement, publish, referrals)
            handled += 1
    return handled


def _publisher(uow: UnitOfWork[Any]) -> Publish:
    async def publish(payload: Payload, event_id: str, /, time: dt.datetime | None = None) -> bool:
        return await uow.publish(payload, id=event_id, time=time)

    return publish


async def report_wait_breaches(
    referrals: ReferralRepository,
    publish: Publish,
    now: dt.datetime,
    thresholds: Mapping[Urgency, Sequence[int]],
) -> int:
    """Report each wait threshold an open referral has reached, once per (referral, threshold)."""
    emitted = 0
    for referral in await referrals.open_at(now):
        for threshold in breached_thresholds(referral.need_arose_at, thresholds.get(referral.urgency, ()), now):
            event_id = stable_id("ReferralWaitBreached", referral.referral_id, threshold)
            breached_at = referral.need_arose_at + dt.timedelta(hours=threshold)
            if not await referrals.record_breach(referral.referral_id, threshold, breached_at, event_id):
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
            if await publish(payload, event_id, time=breached_at):
                emitted += 1
    return emitted


def build_handlers(deps: Dependencies) -> dict[type[Payload], Handler]:
    return {
        ReferralReceived: functools.partial(referral_received, deps=deps),
        ReferralWithdrawn: functools.partial(referral_withdrawn, deps=deps),
        BedAvailabilityUpdated: functools.partial(bed_availability_updated, deps=deps),
        PlacementRegistered: functools.partial(placement_registered, deps=deps),
    }
