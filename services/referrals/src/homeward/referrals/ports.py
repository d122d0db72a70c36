"""The ports handlers are written against: the repositories, the service's configuration and
its unit of work (``ReferralsUnitOfWork``). Adapters implement them with asyncpg
(``adapters/postgres.py``); the unit tests in memory (``tests/factories.py``)."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from homeward.contracts.vocab import BedType, Urgency
from homeward.kit.reference import ReferenceData
from homeward.kit.uow import Repository, UnitOfWork

from .domain.model import BedCount, Referral


@dataclass(frozen=True)
class Config:
    """The service's rules and reference data, the same for every event."""

    reference: ReferenceData
    patient_ref_key: str
    wait_thresholds_hours: Mapping[Urgency, Sequence[int]]


class ReferralRepository(Repository, abc.ABC):
    """Referrals, each tracked as it is handed out or added, so what it records is published."""

    @abc.abstractmethod
    async def get(self, referral_id: str) -> Referral | None: ...

    @abc.abstractmethod
    async def add(self, referral: Referral) -> None: ...

    @abc.abstractmethod
    async def save_placement(self, referral: Referral) -> bool:
        """Store the placement that closed ``referral``; False if another closed it first."""

    @abc.abstractmethod
    async def save_triage(self, referral: Referral) -> None:
        """Store the referral's local options, the instant they were taken at and the triage id."""

    @abc.abstractmethod
    async def triaged_with(self, area: str, bed_type: BedType, site: str | None, since: dt.datetime) -> list[Referral]:
        """Referrals of ``area`` and ``bed_type`` triaged as of ``since`` or later, for which no
        count of ``site`` taken after ``since`` was already known by their triage instant: those a
        count of ``site`` taken at ``since`` can change (``site`` None: every site)."""

    @abc.abstractmethod
    async def save_withdrawal(self, referral: Referral) -> None:
        """Store the withdrawal that stands for ``referral``."""

    @abc.abstractmethod
    async def arrived_while_parked(self, limit: int) -> list[str]:
        """Referrals that events are parked for although the referral exists now (it arrived while
        they were being parked, each transaction blind to the other), claimed for this transaction."""

    @abc.abstractmethod
    async def open_at(self, at: dt.datetime) -> list[Referral]:
        """Referrals waiting at instant ``at``, in referral id order."""

    @abc.abstractmethod
    async def record_breach(
        self, referral_id: str, threshold_hours: int, breached_at: dt.datetime, event_id: str
    ) -> bool:
        """Record that a wait threshold was reported; False if it was recorded before."""


class CapacityRepository(abc.ABC):
    @abc.abstractmethod
    async def try_lock_area(self, area: str, bed_type: BedType) -> bool:
        """Take the right to publish one area's total until the transaction ends, without waiting."""

    @abc.abstractmethod
    async def lock_area(self, area: str, bed_type: BedType) -> None:
        """Take the same right, waiting for it (only the capacity job waits)."""

    @abc.abstractmethod
    async def mark_unsettled(self, area: str, bed_type: BedType) -> None:
        """Note that an area's total changed without being published."""

    @abc.abstractmethod
    async def unsettled(self) -> list[tuple[str, BedType]]:
        """Areas and bed types noted as unsettled, in a fixed order."""

    @abc.abstractmethod
    async def settle(self, area: str, bed_type: BedType) -> int | None:
        """Clear an area's unsettled notes; the last note's id, or None if there were none left."""

    @abc.abstractmethod
    async def as_of(self, area: str, bed_type: BedType, at: dt.datetime) -> list[BedCount]:
        """Each site's count as stated at ``at`` (``domain.rules.counts_as_of``) in ``area``, by site."""

    @abc.abstractmethod
    async def areas_of(self, site: str, bed_type: BedType) -> list[str]:
        """Every area a count of ``site`` ever placed it in."""

    @abc.abstractmethod
    async def try_lock_triage(self, area: str, bed_type: BedType) -> bool:
        """Take the right to triage one area's referrals of one bed type until the transaction
        ends, without waiting (a referral and a count handled at once each miss the other's row)."""

    @abc.abstractmethod
    async def lock_triage(self, area: str, bed_type: BedType) -> None:
        """The same, waiting for it (only the capacity job waits)."""

    @abc.abstractmethod
    async def mark_triage_unsettled(self, area: str, bed_type: BedType, since: dt.datetime) -> None:
        """Note that referrals of an area triaged as of ``since`` or later may have missed a count."""

    @abc.abstractmethod
    async def triage_unsettled(self) -> list[tuple[str, BedType]]:
        """Areas and bed types with triage notes, in a fixed order."""

    @abc.abstractmethod
    async def settle_triage(self, area: str, bed_type: BedType) -> dt.datetime | None:
        """Clear an area's triage notes (under the lock); the earliest ``since`` among them, or
        None if another replica cleared them meanwhile."""

    @abc.abstractmethod
    async def held(self, site: str, bed_type: BedType) -> BedCount | None: ...

    @abc.abstractmethod
    async def record(self, event_id: str, count: BedCount, accepted: bool) -> None:
        """Keep every report received, accepted or stale, for "as of" questions."""

    @abc.abstractmethod
    async def save(self, count: BedCount) -> None:
        """Make ``count`` the figure held for its site and bed type."""

    @abc.abstractmethod
    async def in_area(self, area: str, bed_type: BedType) -> list[BedCount]: ...


class ReferralsUnitOfWork(UnitOfWork[Any]):
    """What a referrals handler gets: the repositories, the configuration, the outbox and the
    parking lot, in one transaction."""

    referrals: ReferralRepository
    capacity: CapacityRepository
    config: Config
