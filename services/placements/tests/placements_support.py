"""Builders, an in-memory repository and a unit of work for the placements tests."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts import Event, new_event, partner_source
from homeward.contracts.events import (
    BedAvailabilityUpdated,
    Payload,
    PlacementEnded,
    PlacementMade,
    PlacementRateChanged,
    ReviewCompleted,
)
from homeward.contracts.vocab import BedType
from homeward.kit.clock import FixedClock
from homeward.kit.reference import Commissioner, ReferenceData, Site
from homeward.placements.adapters.repository import ParkedEvent, PlacementRepository
from homeward.placements.domain import (
    Ending,
    Placement,
    RateEntry,
    Repatriation,
    Review,
    ReviewPolicy,
    ReviewSchedule,
    SiteFact,
)
from homeward.placements.handlers import Context, PlacementHandlers
from homeward.placements.settings import DEFAULT_REVIEW_POLICY

# Valid NHS numbers from the test range 999 000 0000 - 999 999 9999.
NHS_A, NHS_B, NHS_C, NHS_D = "9990000018", "9990000026", "9990000034", "9990000042"
KEY = "test-patient-ref-key"

HOME = "05A"  # commissioner and its area
LOCAL_PROVIDER, LOCAL_SITE = "RYG", "RYG01"
FAR_PROVIDER, FAR_SITE, FAR_AREA = "8Z000", "8Z00001", "QAB"


def at(day: str, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), dt.UTC)


def placement_made(
    pid: str,
    *,
    nhs: str = NHS_A,
    commissioner: str = HOME,
    provider: str = FAR_PROVIDER,
    site: str = FAR_SITE,
    site_area: str | None = FAR_AREA,
    start: str = "2026-01-05",
    rate: int = 54500,
    **extra: Any,
) -> PlacementMade:
    data: dict[str, Any] = {
        "placement_id": pid,
        "nhs_number": nhs,
        "commissioner": commissioner,
        "provider": provider,
        "provider_site": site,
        "bed_type": "adult_acute",
        "cohort": "mental_health",
        "age_band": "adult",
        "legal_status": "mha_s3",
        "programme": "mental_health",
        "start_date": start,
        "daily_rate_pence": rate,
        **extra,
    }
    if site_area is not None:
        data["provider_site_area"] = site_area
    return PlacementMade.model_validate_json(json.dumps(data))


def local_made(pid: str, **extra: Any) -> PlacementMade:
    site_area = extra.pop("site_area", HOME)
    rate = extra.pop("rate", 40000)
    return placement_made(pid, provider=LOCAL_PROVIDER, site=LOCAL_SITE, site_area=site_area, rate=rate, **extra)


def rate_changed(pid: str, rate: int, effective: str, **extra: Any) -> PlacementRateChanged:
    return PlacementRateChanged.model_validate_json(
        json.dumps({"placement_id": pid, "daily_rate_pence": rate, "effective_date": effective, **extra})
    )


def review(pid: str, review_type: str, day: str, **extra: Any) -> ReviewCompleted:
    return ReviewCompleted.model_validate_json(
        json.dumps({"placement_id": pid, "review_type": review_type, "review_date": day, **extra})
    )


def ended(pid: str, day: str, reason: str, to: str | None = None) -> PlacementEnded:
    data: dict[str, Any] = {"placement_id": pid, "end_date": day, "end_reason": reason}
    if to:
        data["transfer_to_placement_id"] = to
    return PlacementEnded.model_validate_json(json.dumps(data))


def beds(provider: str, site: str, area: str, as_of: str, bed_type: str = "adult_acute") -> BedAvailabilityUpdated:
    return BedAvailabilityUpdated.model_validate_json(
        json.dumps(
            {
                "provider": provider,
                "site": site,
                "site_area": area,
                "bed_type": bed_type,
                "available_beds": 1,
                "as_of": at(as_of).isoformat(),
            }
        )
    )


def event(payload: Payload, org: str = HOME, time: dt.datetime | None = None, id: str | None = None) -> Event[Any]:
    return new_event(payload, source=partner_source(org), time=time or at("2026-01-05"), id=id)


def default_policy() -> ReviewPolicy:
    return ReviewPolicy.from_csv(DEFAULT_REVIEW_POLICY.read_text())


def reference(**sites: str) -> ReferenceData:
    return ReferenceData(
        commissioners={HOME: Commissioner(HOME, HOME)},
        sites={code: Site(code, code[:3], area) for code, area in sites.items()},
    )


# ----------------------------------------------------------------------------- fakes


@dataclass
class FakeStore:
    placements: dict[str, Placement] = field(default_factory=dict)
    nhs_numbers: dict[str, str] = field(default_factory=dict)
    sites: dict[str, SiteFact] = field(default_factory=dict)
    parked: dict[str, ParkedEvent] = field(default_factory=dict)
    resolutions: dict[str, tuple[str, str]] = field(default_factory=dict)
    dead_letters: list[tuple[str, str, str]] = field(default_factory=list)
    repatriations: dict[str, Repatriation] = field(default_factory=dict)
    repatriation_ids: dict[str, tuple[str, bool]] = field(default_factory=dict)  # from -> (event id, published)
    capacity: list[tuple[str, BedType, int, dt.datetime]] = field(default_factory=list)
    published: list[tuple[str, Payload]] = field(default_factory=list)
    times: dict[str, dt.datetime | None] = field(default_factory=dict)  # event id -> the time it was published with
    locks: list[str] = field(default_factory=list)

    def snapshot(self) -> FakeStore:
        return copy.deepcopy(self)

    def restore(self, other: FakeStore) -> None:
        self.__dict__.update(copy.deepcopy(other).__dict__)

    def of_type(self, cls: type[Payload]) -> list[Any]:
        return [p for _, p in self.published if isinstance(p, cls)]


class FakeRepository(PlacementRepository):
    """Keeps copies, as a database would: a change reaches the store only through a method."""

    def __init__(self, store: FakeStore) -> None:
        self.s = store

    async def lock(self, key: str) -> None:
        self.s.locks.append(key)

    @contextlib.asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        before = self.s.snapshot()
        try:
            yield
        except BaseException:
            self.s.restore(before)
            raise

    def savepoint(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._savepoint()

    async def get(self, placement_id: str) -> Placement | None:
        found = self.s.placements.get(placement_id)
        return copy.deepcopy(found) if found else None

    async def add(self, placement: Placement, nhs_number: str) -> None:
        assert placement.placement_id not in self.s.placements
        self.s.nhs_numbers.setdefault(placement.patient_ref, nhs_number)
        self.s.placements[placement.placement_id] = copy.deepcopy(placement)

    async def add_rate(self, placement_id: str, entry: RateEntry) -> None:
        self.s.placements[placement_id].rates.append(entry)

    async def add_review(self, placement_id: str, review: Review, schedule: ReviewSchedule | None) -> None:
        p = self.s.placements[placement_id]
        assert not any(r.review_type == review.review_type and r.review_date == review.review_date for r in p.reviews)
        p.reviews.append(review)
        if schedule is not None:
            p.schedules[schedule.review_type] = schedule

    async def save_ending(self, placement_id: str, ending: Ending) -> None:
        self.s.placements[placement_id].ending = ending

    async def learned_site(self, site: str) -> SiteFact | None:
        return self.s.sites.get(site)

    async def learn_site(self, fact: SiteFact) -> None:
        current = self.s.sites.get(fact.site)
        if current is None or (current.stated_at, current.event_id) < (fact.stated_at, fact.event_id):
            self.s.sites[fact.site] = fact

    async def park(self, parked: ParkedEvent) -> None:
        self.s.parked.setdefault(parked.event_id, parked)

    async def parked_for(self, placement_id: str) -> list[ParkedEvent]:
        waiting = [
            p
            for p in self.s.parked.values()
            if p.placement_id == placement_id and self.s.resolutions.get(p.event_id) is None
        ]
        return sorted(waiting, key=lambda p: p.event_time)

    async def resolve_parked(self, event_id: str, status: str, resolution: str, at: dt.datetime) -> None:
        self.s.resolutions[event_id] = (status, resolution)

    async def dead_letter(self, parked: ParkedEvent, reason: str, message: str, at: dt.datetime) -> None:
        self.s.dead_letters.append((parked.event_id, reason, message))

    def _unmatched_from(self, p: Placement) -> bool:
        return p.placement_id not in self.s.repatriations

    async def stated_repatriations_to(self, target_id: str) -> list[Placement]:
        return [
            copy.deepcopy(p)
            for p in self.s.placements.values()
            if p.ending
            and p.ending.end_reason.value == "repatriated"
            and p.ending.transfer_to_placement_id == target_id
            and self._unmatched_from(p)
        ]

    async def transfer_sources(self, patient_ref: str) -> list[Placement]:
        return [
            copy.deepcopy(p)
            for p in self.s.placements.values()
            if p.patient_ref == patient_ref
            and p.ending
            and p.ending.end_reason.value == "transfer"
            and p.out_of_area
            and self._unmatched_from(p)
        ]

    async def arrival_candidates(self, patient_ref: str) -> list[Placement]:
        used = {r.to_placement_id for r in self.s.repatriations.values()}
        return [
            copy.deepcopy(p)
            for p in self.s.placements.values()
            if p.patient_ref == patient_ref and p.placement_id not in used
        ]

    async def add_repatriation(self, repatriation: Repatriation, event_id: str, at: dt.datetime) -> bool:
        used = {r.to_placement_id for r in self.s.repatriations.values()}
        if repatriation.from_placement_id in self.s.repatriations or repatriation.to_placement_id in used:
            return False
        self.s.repatriations[repatriation.from_placement_id] = repatriation
        self.s.repatriation_ids[repatriation.from_placement_id] = (event_id, False)
        return True

    async def save_agreement(self, placement: Placement) -> None:
        stored = self.s.placements[placement.placement_id]
        stored.agreed_by, stored.agreed_event_id = placement.agreed_by, placement.agreed_event_id

    async def mark_released(self, placement_id: str) -> None:
        self.s.placements[placement_id].released = True

    async def confirm_rate(self, placement_id: str, entry: RateEntry) -> None:
        rates = self.s.placements[placement_id].rates
        rates[:] = [entry if e.event_id == entry.event_id else e for e in rates]

    async def unpublished_repatriations(self, placement_id: str) -> list[tuple[Repatriation, str]]:
        return [
            (r, self.s.repatriation_ids[f][0])
            for f, r in sorted(self.s.repatriations.items())
            if not self.s.repatriation_ids[f][1] and placement_id in (r.from_placement_id, r.to_placement_id)
        ]

    async def mark_repatriation_published(self, from_placement_id: str) -> None:
        event_id, _ = self.s.repatriation_ids[from_placement_id]
        self.s.repatriation_ids[from_placement_id] = (event_id, True)

    async def repatriations_of(self, placement_id: str) -> list[tuple[Repatriation, str, bool]]:
        return [
            (r, *self.s.repatriation_ids[f])
            for f, r in sorted(self.s.repatriations.items())
            if placement_id in (r.from_placement_id, r.to_placement_id)
        ]

    async def correct_repatriation(self, move: Repatriation) -> None:
        self.s.repatriations[move.from_placement_id] = move

    async def record_capacity(
        self, area: str, bed_type: BedType, available_beds: int, as_of: dt.datetime, event_id: str
    ) -> None:
        self.s.capacity.append((area, bed_type, available_beds, as_of))


class FakeUoW:
    def __init__(self, store: FakeStore, clock: FixedClock) -> None:
        self.store = store
        self.clock = clock

    async def publish(self, data: Payload, *, id: str | None = None, time: dt.datetime | None = None) -> bool:
        if id is not None and any(i == id for i, _ in self.store.published):
            return False
        self.store.published.append((id or "", data))
        self.store.times[id or ""] = time
        return True


class Register:
    """The handlers wired to fakes: ``send`` behaves as the kit does (one savepoint per event)."""

    def __init__(
        self,
        *,
        today: str = "2026-01-05",
        ref: ReferenceData | None = None,
        policy: ReviewPolicy | None = None,
        window: int = 14,
        delegations: dict[str, str] | None = None,
    ) -> None:
        self.store = FakeStore()
        self.clock = FixedClock(dt.date.fromisoformat(today))
        self.ctx = Context(ref or reference(), policy or default_policy(), KEY, window, delegations=delegations or {})
        self.handlers = PlacementHandlers(self.ctx, lambda uow: FakeRepository(uow.store)).mapping()

    async def send(self, e: Event[Any]) -> None:
        before = self.store.snapshot()
        try:
            await self.handlers[type(e.data)](e, FakeUoW(self.store, self.clock))
        except BaseException:
            self.store.restore(before)
            raise

    def placement(self, pid: str) -> Placement:
        return self.store.placements[pid]
