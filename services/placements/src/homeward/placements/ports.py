"""The ports the handlers work through: the register's repository (a Protocol the PostgreSQL
adapter and the tests' in-memory fake both satisfy), the service's configuration, and its unit
of work, which names them (``uow.placements``, ``uow.config``) beside the kit's outbox
(``uow.publish``) and parking lot (``uow.park``, ``uow.retry_parked``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from homeward.contracts.plausibility import RateBounds, load_bounds
from homeward.contracts.vocab import BedType
from homeward.kit.reference import ReferenceData
from homeward.kit.uow import UnitOfWork

from .domain import Ending, Placement, RateEntry, Repatriation, Review, ReviewPolicy, ReviewSchedule, SiteFact


def placement_key(placement_id: str) -> str:
    """What an event about a placement waits for in the parking lot, and the placement's lock."""
    return f"placement:{placement_id}"


def patient_key(ref: str) -> str:
    """The lock on one person's repatriation matching."""
    return f"patient:{ref}"


@dataclass(frozen=True)
class Config:
    """The service's rules and reference data."""

    reference: ReferenceData
    policy: ReviewPolicy
    patient_ref_key: str
    repatriation_window_days: int = 14
    # commissioner -> the lead commissioner it delegated to (docs/authority.md)
    delegations: Mapping[str, str] = field(default_factory=dict)
    # plausible daily rates per bed type; a rate outside them is held for confirmation
    rate_bounds: Mapping[BedType, RateBounds] = field(default_factory=load_bounds)


class PlacementRepository(Protocol):
    """The register. ``get`` and ``add`` track the placements they hand out or are given, so
    the unit of work publishes the events they record."""

    async def lock(self, key: str) -> None:
        """Serialise work on one placement or one person across replicas until the transaction ends."""

    async def get(self, placement_id: str) -> Placement | None: ...

    async def add(self, placement: Placement, nhs_number: str) -> None:
        """Store a new placement with its first rate and its review schedule."""

    async def add_rate(self, placement_id: str, entry: RateEntry) -> None: ...

    async def add_review(self, placement_id: str, review: Review, schedule: ReviewSchedule | None) -> None: ...

    async def save_ending(self, placement_id: str, ending: Ending) -> None: ...

    async def learned_site(self, site: str) -> SiteFact | None: ...

    async def learn_site(self, fact: SiteFact) -> None:
        """Keep ``fact`` unless a newer statement about the site is already known."""

    async def stated_repatriations_to(self, target_id: str) -> list[Placement]:
        """Placements ended as *repatriated* naming ``target_id``, not yet counted."""

    async def transfer_sources(self, patient_ref: str) -> list[Placement]:
        """This person's placements that ended with a transfer and are not yet counted as a repatriation."""

    async def arrival_candidates(self, patient_ref: str) -> list[Placement]:
        """This person's placements that are not yet the destination of a repatriation."""

    async def add_repatriation(self, repatriation: Repatriation, event_id: str, at: dt.datetime) -> bool:
        """Record a repatriation; False if either placement already has one."""

    async def save_agreement(self, placement: Placement) -> None:
        """Record who agreed the placement (``agreed_by``, ``agreed_event_id``)."""

    async def mark_released(self, placement_id: str) -> None:
        """PlacementRegistered has been published: the placement is chargeable."""

    async def confirm_rate(self, placement_id: str, entry: RateEntry) -> None:
        """A held rate statement is confirmed (``entry`` is the confirmed one, same event id)."""

    async def unpublished_repatriations(self, placement_id: str) -> list[tuple[Repatriation, str]]:
        """Repatriations from or to this placement not yet published, with their event ids."""

    async def mark_repatriation_published(self, from_placement_id: str) -> None: ...

    async def repatriations_of(self, placement_id: str) -> list[tuple[Repatriation, str, bool]]:
        """Repatriations from or to this placement: the move, its event id, and whether it was published."""

    async def correct_repatriation(self, move: Repatriation) -> None:
        """Store the rates now in force at a recorded move (a later rate change took effect on or before it)."""

    async def record_capacity(
        self, area: str, bed_type: BedType, available_beds: int, as_of: dt.datetime, event_id: str
    ) -> None: ...


class PlacementsUnitOfWork(UnitOfWork[Any]):
    """What a placements handler gets: the register, the configuration, and the kit's outbox,
    parking lot and clock, all in one transaction."""

    placements: PlacementRepository
    config: Config
