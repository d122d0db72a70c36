"""Builders, an in-memory repository and parking lot, and a fake unit of work for the placements tests."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg
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
from homeward.kit.authority import Rejected, refusal
from homeward.kit.clock import FixedClock
from homeward.kit.reference import Commissioner, ReferenceData, Site
from homeward.kit.topics import Topics
from homeward.kit.uow import Handler, Repository, unit_of_work
from homeward.placements.adapters.patients import PatientKeys
from homeward.placements.adapters.repository import PgPlacementsUnitOfWork
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
from homeward.placements.handlers import HANDLERS
from homeward.placements.ports import Config, PlacementsUnitOfWork
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

# The handler table as the kit runs it: by event type (what ``uow.retry_parked`` looks up).
HANDLERS_BY_TYPE: dict[str, Handler] = {cls.event_type(): h for cls, h in HANDLERS.items()}


@dataclass
class FakeParked:
    """An entry of the in-memory parking lot: what the kit keeps, the event itself among it."""

    event: Event[Any]
    awaiting: str
    reason: str
    parked_at: dt.datetime


@dataclass
class FakeStore:
    placements: dict[str, Placement] = field(default_factory=dict)
    nhs_numbers: dict[str, str] = field(default_factory=dict)
    sites: dict[str, SiteFact] = field(default_factory=dict)
    parked: dict[str, FakeParked] = field(default_factory=dict)  # event id -> entry
    resolutions: dict[str, tuple[str, str]] = field(default_factory=dict)  # event id -> (status, why)
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


class FakeRepository(Repository):
    """The register in memory (``placements.ports.PlacementRepository``). Keeps copies, as a
    database would: a change reaches the store only through a method."""

    def __init__(self, store: FakeStore) -> None:
        self.s = store

    async def lock(self, key: str) -> None:
        self.s.locks.append(key)

    async def get(self, placement_id: str) -> Placement | None:
        found = self.s.placements.get(placement_id)
        return self.track(copy.deepcopy(found)) if found else None

    async def add(self, placement: Placement, nhs_number: str) -> None:
        assert placement.placement_id not in self.s.placements
        self.s.nhs_numbers.setdefault(placement.patient_ref, nhs_number)
        stored = copy.deepcopy(self.track(placement))
        stored.take_events()  # a database keeps the placement, not what it has yet to publish
        self.s.placements[placement.placement_id] = stored

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


class FakeUoW(PlacementsUnitOfWork):
    """The service's unit of work over the in-memory store: the outbox and the parking lot are
    lists in the store, and ``retry_parked`` behaves as the kit's (oldest fact first, each in a
    savepoint; a refusal is dead-lettered, an event parked again stays parked)."""

    def __init__(self, store: FakeStore, clock: FixedClock, config: Config, cause: Event[Any] | None = None) -> None:
        super().__init__(None, "placements", clock, cause, handlers=HANDLERS_BY_TYPE)  # type: ignore[arg-type]
        self.store = store
        self.config = config
        self.placements = FakeRepository(store)
        self.parked_now: set[str] = set()

    async def publish(
        self,
        data: Payload,
        *,
        id: str | None = None,
        topic: str | None = None,
        time: dt.datetime | None = None,
    ) -> bool:
        if id is not None and any(i == id for i, _ in self.store.published):
            return False
        self.store.published.append((id or "", data))
        self.store.times[id or ""] = time or (self.cause.time if self.cause is not None else self.clock.now())
        return True

    async def park(self, event: Event[Any], *, awaiting: str, reason: str) -> bool:
        self.parked_now.add(event.id)
        if event.id in self.store.parked:
            return False
        self.store.parked[event.id] = FakeParked(event, awaiting, reason, self.clock.now())
        return True

    async def retry_parked(self, awaiting: str) -> int:
        waiting = [
            p for i, p in self.store.parked.items() if p.awaiting == awaiting and i not in self.store.resolutions
        ]
        applied = 0
        cause = self.cause
        try:
            for parked in sorted(waiting, key=lambda p: p.event.time):
                event = parked.event
                self.cause = event
                before, self.parked_now = self.store.snapshot(), set()
                try:
                    await self.handlers[event.type](event, self)
                    await self.flush()
                except Rejected as exc:
                    self.store.restore(before)
                    reason, message = refusal(exc)
                    self.store.dead_letters.append((event.id, reason, message))
                    self.store.resolutions[event.id] = ("rejected", f"{reason}: {message}")
                    continue
                if event.id in self.parked_now:
                    continue
                self.store.resolutions[event.id] = ("applied", f"applied when {awaiting} appeared")
                applied += 1
        finally:
            self.cause = cause
        return applied


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
        self.config = Config(ref or reference(), policy or default_policy(), KEY, window, delegations=delegations or {})

    async def send(self, e: Event[Any]) -> None:
        before = self.store.snapshot()
        try:
            uow = FakeUoW(self.store, self.clock, self.config, cause=e)
            await HANDLERS[type(e.data)](e, uow)
            await uow.flush()
        except BaseException:
            self.store.restore(before)
            raise

    def placement(self, pid: str) -> Placement:
        return self.store.placements[pid]


async def handle_in_postgres(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    config: Config,
    keys: PatientKeys,
    e: Event[Any],
    clock: FixedClock,
    *,
    topics: Topics | None = None,
    parking_expiry: dt.timedelta | None = None,
) -> None:
    """Handle ``e`` in a transaction of its own, as the kit's consumer does."""
    factory = functools.partial(PgPlacementsUnitOfWork, config=config, keys=keys)
    async with unit_of_work(
        pool, factory, "placements", clock, topics, cause=e, handlers=HANDLERS_BY_TYPE, parking_expiry=parking_expiry
    ) as uow:
        await HANDLERS[type(e.data)](e, uow)
