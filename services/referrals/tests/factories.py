"""Builders of valid referrals-service events, and in-memory fakes of the repository ports."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts import Event, Payload, new_event, partner_source, service_source
from homeward.contracts.events import BedAvailabilityUpdated, PlacementRegistered, ReferralReceived, ReferralWithdrawn
from homeward.contracts.identifiers import nhs_numbers_in_test_range as nhs_numbers
from homeward.contracts.vocab import BedType
from homeward.kit.clock import FixedClock
from homeward.kit.reference import ReferenceData
from homeward.referrals.domain.model import BedCount, Placement, Referral, Withdrawal
from homeward.referrals.domain.rules import counts_as_of
from homeward.referrals.handlers import Dependencies
from homeward.referrals.ports import CapacityRepository, ReferralRepository, Repositories

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


class FakeReferrals(ReferralRepository):
    def __init__(self) -> None:
        self.rows: dict[str, Referral] = {}
        self.parked_rows: dict[tuple[str, str], Placement] = {}
        self.breaches: dict[tuple[str, int], dt.datetime] = {}
        self.problems: dict[tuple[str, str], str] = {}
        self.parked_withdrawals: dict[str, Withdrawal] = {}
        self.refused_withdrawals: dict[str, str] = {}

    async def get(self, referral_id: str) -> Referral | None:
        found = self.rows.get(referral_id)
        return None if found is None else Referral(**{**found.__dict__})

    async def add(self, referral: Referral) -> None:
        assert referral.referral_id not in self.rows
        self.rows[referral.referral_id] = Referral(**{**referral.__dict__})

    async def save_placement(self, referral: Referral) -> bool:
        if self.rows[referral.referral_id].placement is not None:
            return False
        self.rows[referral.referral_id] = Referral(**{**referral.__dict__})
        return True

    async def save_triage(self, referral: Referral) -> None:
        self.rows[referral.referral_id] = Referral(**{**referral.__dict__})

    async def triaged_with(self, area: str, bed_type: BedType, site: str | None, since: dt.datetime) -> list[Referral]:
        # Every referral a count at ``since`` could change (the site filter is only a saving).
        return [
            Referral(**{**r.__dict__})
            for _, r in sorted(self.rows.items())
            if r.home_area == area and r.bed_type == bed_type and r.triaged_as_of and r.triaged_as_of >= since
        ]

    async def save_withdrawal(self, referral: Referral) -> None:
        self.rows[referral.referral_id] = Referral(**{**referral.__dict__})

    async def park_withdrawal(self, withdrawal: Withdrawal) -> Withdrawal:
        held = self.parked_withdrawals.get(withdrawal.referral_id)
        standing = withdrawal if held is None else held.earlier_of(withdrawal)
        self.parked_withdrawals[withdrawal.referral_id] = standing
        return standing

    async def take_parked_withdrawal(self, referral_id: str) -> Withdrawal | None:
        return self.parked_withdrawals.pop(referral_id, None)

    async def refuse_parked_withdrawal(self, withdrawal: Withdrawal, problem: str) -> None:
        self.refused_withdrawals[withdrawal.referral_id] = problem

    async def park(self, placement: Placement) -> bool:
        key = (placement.referral_id, placement.placement_id)
        if key in self.parked_rows:
            return False
        self.parked_rows[key] = placement
        return True

    async def parked(self, referral_id: str) -> list[Placement]:
        found = [p for (r, i), p in self.parked_rows.items() if r == referral_id and (r, i) not in self.problems]
        return sorted(found, key=lambda p: (p.start_date, p.placement_id))

    async def parked_with_referral(self, limit: int) -> list[Placement]:
        found = [p for k, p in sorted(self.parked_rows.items()) if k[0] in self.rows and k not in self.problems]
        return found[:limit]

    async def unpark(self, referral_id: str, placement_id: str) -> None:
        self.parked_rows.pop((referral_id, placement_id), None)

    async def refuse_parked(self, referral_id: str, placement_id: str, problem: str) -> None:
        self.problems[(referral_id, placement_id)] = problem

    async def open_at(self, at: dt.datetime) -> list[Referral]:
        return [r for _, r in sorted(self.rows.items()) if r.open_at(at)]

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
class FakeUnitOfWork:
    """Stands in for the kit's UnitOfWork: records what would go to the outbox, once per id."""

    clock: FixedClock = field(default_factory=lambda: FixedClock(T0))
    published: dict[str, Payload] = field(default_factory=dict)
    conn: None = None

    async def publish(self, data: Payload, *, id: str | None = None, **_: Any) -> bool:
        assert id is not None, "the referrals service always publishes with a deterministic id"
        if id in self.published:
            return False
        self.published[id] = data
        return True

    def of(self, cls: type[Payload]) -> list[Any]:
        return [p for p in self.published.values() if isinstance(p, cls)]


@dataclass
class World:
    referrals: FakeReferrals = field(default_factory=FakeReferrals)
    capacity: FakeCapacity = field(default_factory=FakeCapacity)
    reference: ReferenceData = field(default_factory=ReferenceData)
    uow: FakeUnitOfWork = field(default_factory=FakeUnitOfWork)

    @property
    def deps(self) -> Dependencies:
        repos = Repositories(referrals=self.referrals, capacity=self.capacity)
        return Dependencies(repositories=lambda _uow: repos, reference=self.reference, patient_ref_key=KEY)
