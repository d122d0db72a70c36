"""Builders of valid referrals-service events, and in-memory fakes of the repository ports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeward.contracts import Event, Payload, new_event, partner_source, service_source
from homeward.contracts.events import BedAvailabilityUpdated, PlacementRegistered, ReferralReceived, ReferralWithdrawn
from homeward.contracts.identifiers import nhs_numbers_in_test_range as nhs_numbers
from homeward.contracts.vocab import BedType
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import Rejected
from homeward.kit.reference import ReferenceData
from homeward.referrals.domain.model import BedCount, Referral
from homeward.referrals.domain.rules import counts_as_of
from homeward.referrals.handlers import HANDLERS
from homeward.referrals.ports import CapacityRepository, Config, ReferralRepository, ReferralsUnitOfWork
from homeward.referrals.settings import ReferralsSettings

KEY = "test-patient-ref-key-at-least-32-characters"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


NHS_A, NHS_B, NHS_C, NHS_D = nhs_numbers(4, start=123)


def referral(referral_id: str, commissioner: str, **extra: Any) -> ReferralReceived:
    data = {
        "referral_id": referral_id,
        "nhs_number": NHS_A,
        "commissioner": commissioner,
        "bed_type": "picu",
        "cohort": "mental_health",
        "age_band": "adult",
        "urgency": "urgent",
        "need_arose_at": T0.isoformat(),
        **extra,
    }
    return ReferralReceived.model_validate_json(json.dumps(data))


def withdrawn(
    referral_id: str, commissioner: str, at: dt.datetime, reason: str = "no_longer_needed"
) -> ReferralWithdrawn:
    data = {"referral_id": referral_id, "commissioner": commissioner, "withdrawn_at": at.isoformat(), "reason": reason}
    return ReferralWithdrawn.model_validate_json(json.dumps(data))


def beds(
    provider: str, site: str, area: str, available: int, as_of: dt.datetime, **extra: Any
) -> BedAvailabilityUpdated:
    data = {
        "provider": provider,
        "site": site,
        "site_area": area,
        "bed_type": "picu",
        "available_beds": available,
        "as_of": as_of.isoformat(),
        **extra,
    }
    return BedAvailabilityUpdated.model_validate_json(json.dumps(data))


def registered(
    placement_id: str,
    referral_id: str | None,
    commissioner: str,
    *,
    site: str,
    site_area: str,
    out_of_area: bool,
    reason: str | None = None,
    start_date: str = "2026-03-04",
    provider: str = "8HA03",
    bed_type: str = "picu",
) -> PlacementRegistered:
    data: dict[str, Any] = {
        "placement_id": placement_id,
        "referral_id": referral_id,
        "patient_ref": "pt_" + "0" * 32,
        "commissioner": commissioner,
        "commissioner_area": commissioner,
        "provider": provider,
        "provider_site": site,
        "provider_site_area": site_area,
        "bed_type": bed_type,
        "setting": "inpatient",
        "cohort": "mental_health",
        "age_band": "adult",
        "legal_status": "mha_s3",
        "programme": "mental_health",
        "start_date": start_date,
        "daily_rate_pence": 54500,
        "out_of_area": out_of_area,
        "out_of_area_reason": reason,
        "inappropriate": out_of_area and reason == "10",
        "funding": [{"commissioner": commissioner, "share_bp": 10000}],
    }
    return PlacementRegistered.model_validate_json(json.dumps(data))


def from_partner(payload: Payload, ods: str, **kw: Any) -> Event[Any]:
    return new_event(payload, source=partner_source(ods), **kw)


def from_placements(payload: Payload, **kw: Any) -> Event[Any]:
    return new_event(payload, source=service_source("placements"), **kw)


# ------------------------------------------------------------------------------------ fakes


def _copy(referral: Referral) -> Referral:
    """What a database hands out: a copy, holding no recorded events."""
    return dataclasses.replace(referral)


class FakeReferrals(ReferralRepository):
    def __init__(self, lot: list[Parked]) -> None:
        self.rows: dict[str, Referral] = {}
        self.breaches: dict[tuple[str, int], dt.datetime] = {}
        self.lot = lot

    async def get(self, referral_id: str) -> Referral | None:
        found = self.rows.get(referral_id)
        return None if found is None else self.track(_copy(found))

    async def add(self, referral: Referral) -> None:
        assert referral.referral_id not in self.rows
        self.rows[referral.referral_id] = _copy(referral)
        self.track(referral)

    async def save_placement(self, referral: Referral) -> bool:
        if self.rows[referral.referral_id].placement is not None:
            return False
        self.rows[referral.referral_id] = _copy(referral)
        return True

    async def save_triage(self, referral: Referral) -> None:
        self.rows[referral.referral_id] = _copy(referral)

    async def triaged_with(self, area: str, bed_type: BedType, site: str | None, since: dt.datetime) -> list[Referral]:
        # Every referral a count at ``since`` could change (the site filter is only a saving).
        return [
            self.track(_copy(r))
            for _, r in sorted(self.rows.items())
            if r.home_area == area and r.bed_type == bed_type and r.triaged_as_of and r.triaged_as_of >= since
        ]

    async def save_withdrawal(self, referral: Referral) -> None:
        self.rows[referral.referral_id] = _copy(referral)

    async def arrived_while_parked(self, limit: int) -> list[str]:
        waiting = sorted({p.awaiting.removeprefix("referral:") for p in self.lot if p.status == "parked"})
        return [r for r in waiting if r in self.rows][:limit]

    async def open_at(self, at: dt.datetime) -> list[Referral]:
        return [self.track(_copy(r)) for _, r in sorted(self.rows.items()) if r.open_at(at)]

    async def record_breach(
        self, referral_id: str, threshold_hours: int, breached_at: dt.datetime, event_id: str
    ) -> bool:
        if (referral_id, threshold_hours) in self.breaches:
            return False
        self.breaches[(referral_id, threshold_hours)] = breached_at
        return True


class FakeCapacity(CapacityRepository):
    def __init__(self) -> None:
        self.held_counts: dict[tuple[str, BedType], BedCount] = {}
        self.reports: list[tuple[str, BedCount, bool]] = []
        self.busy: set[str] = set()
        """Areas whose total another transaction is publishing right now."""
        self.notes: list[tuple[str, BedType]] = []
        self.triage_notes: list[tuple[str, BedType, dt.datetime]] = []

    async def try_lock_area(self, area: str, bed_type: BedType) -> bool:
        return area not in self.busy

    async def lock_area(self, area: str, bed_type: BedType) -> None:
        assert area not in self.busy, "the fake cannot wait"

    async def mark_unsettled(self, area: str, bed_type: BedType) -> None:
        self.notes.append((area, bed_type))

    async def unsettled(self) -> list[tuple[str, BedType]]:
        return sorted(set(self.notes))

    async def settle(self, area: str, bed_type: BedType) -> int | None:
        ids = [i for i, note in enumerate(self.notes, 1) if note == (area, bed_type)]
        self.notes = [n for n in self.notes if n != (area, bed_type)]
        return max(ids) if ids else None

    async def as_of(self, area: str, bed_type: BedType, at: dt.datetime) -> list[BedCount]:
        return counts_as_of((c for _, c, _ in self.reports), area, bed_type, at)

    async def areas_of(self, site: str, bed_type: BedType) -> list[str]:
        return sorted({c.area for _, c, _ in self.reports if c.site == site and c.bed_type == bed_type})

    async def try_lock_triage(self, area: str, bed_type: BedType) -> bool:
        return area not in self.busy

    async def lock_triage(self, area: str, bed_type: BedType) -> None:
        assert area not in self.busy, "the fake cannot wait"

    async def mark_triage_unsettled(self, area: str, bed_type: BedType, since: dt.datetime) -> None:
        self.triage_notes.append((area, bed_type, since))

    async def triage_unsettled(self) -> list[tuple[str, BedType]]:
        return sorted({(a, b) for a, b, _ in self.triage_notes})

    async def settle_triage(self, area: str, bed_type: BedType) -> dt.datetime | None:
        mine = [s for a, b, s in self.triage_notes if (a, b) == (area, bed_type)]
        self.triage_notes = [n for n in self.triage_notes if (n[0], n[1]) != (area, bed_type)]
        return min(mine, default=None)

    async def held(self, site: str, bed_type: BedType) -> BedCount | None:
        return self.held_counts.get((site, bed_type))

    async def record(self, event_id: str, count: BedCount, accepted: bool) -> None:
        self.reports.append((event_id, count, accepted))

    async def save(self, count: BedCount) -> None:
        self.held_counts[(count.site, count.bed_type)] = count

    async def in_area(self, area: str, bed_type: BedType) -> list[BedCount]:
        return sorted(
            (c for c in self.held_counts.values() if c.area == area and c.bed_type == bed_type), key=lambda c: c.site
        )


@dataclass
class Parked:
    """An entry of the in-memory parking lot."""

    event: Event[Any]
    awaiting: str
    reason: str
    status: str = "parked"
    resolution: str | None = None


class FakeUnitOfWork(ReferralsUnitOfWork):
    """The unit of work in memory (cosmicpython's FakeUnitOfWork): the fake repositories, an
    outbox that keeps each id once, and a parking lot that retries through the handler table as
    the kit's does. ``handle`` runs an event as the kit's consumer does."""

    def __init__(self, reference: ReferenceData | None = None, clock: FixedClock | None = None) -> None:
        table = {payload.event_type(): handler for payload, handler in HANDLERS.items()}
        super().__init__(None, "referrals", clock or FixedClock(T0), handlers=table)  # type: ignore[arg-type]
        self.config = Config(
            reference=reference or ReferenceData(),
            patient_ref_key=KEY,
            wait_thresholds_hours=ReferralsSettings().wait_thresholds_hours,
        )
        self.lot: list[Parked] = []
        self.referrals: FakeReferrals = FakeReferrals(self.lot)
        self.capacity: FakeCapacity = FakeCapacity()
        self.outbox: dict[str, Payload] = {}
        self.times: dict[str, dt.datetime] = {}
        self._parked_again = False

    async def publish(
        self, data: Payload, *, id: str | None = None, topic: str | None = None, time: dt.datetime | None = None
    ) -> bool:
        assert id is not None, "the referrals service always publishes with a deterministic id"
        if id in self.outbox:
            return False
        self.outbox[id] = data
        self.times[id] = time or (self.cause.time if self.cause is not None else self.clock.now())
        return True

    async def park(self, event: Event[Any], *, awaiting: str, reason: str) -> bool:
        self._parked_again = True
        held = next((p for p in self.lot if (p.event.source, p.event.id) == (event.source, event.id)), None)
        if held is not None:
            if held.status == "parked":
                held.awaiting, held.reason = awaiting, reason
            return False
        self.lot.append(Parked(event, awaiting, reason))
        return True

    async def retry_parked(self, awaiting: str) -> int:
        applied, cause = 0, self.cause
        waiting = [p for p in self.lot if p.awaiting == awaiting and p.status == "parked"]
        try:
            for parked in sorted(waiting, key=lambda p: p.event.time):  # oldest fact first (stable)
                self.cause, self._parked_again = parked.event, False
                try:
                    await self.handlers[parked.event.type](parked.event, self)
                    await self.flush()
                except Rejected as exc:
                    parked.status, parked.resolution = "rejected", f"{exc.reason}: {exc.message}"
                    continue
                if not self._parked_again:
                    parked.status, parked.resolution = "applied", f"applied when {awaiting} appeared"
                    applied += 1
        finally:
            self.cause = cause
        return applied

    async def handle(self, event: Event[Any]) -> None:
        """As the kit's consumer: the handler from the table, then what was recorded is published."""
        self.cause = event
        try:
            await self.handlers[event.type](event, self)
            await self.flush()
        finally:
            self.cause = None

    async def run(self, work: Callable[[ReferralsUnitOfWork], Awaitable[int]], at: dt.datetime | None = None) -> int:
        """As a job's unit of work, as of ``at`` (the clock's now by default)."""
        if at is not None:
            self.clock = FixedClock(at)
        done = await work(self)
        await self.flush()
        return done

    def of(self, cls: type[Payload]) -> list[Any]:
        return [p for p in self.outbox.values() if isinstance(p, cls)]

    def parked(self, status: str = "parked") -> list[Parked]:
        return [p for p in self.lot if p.status == status]
