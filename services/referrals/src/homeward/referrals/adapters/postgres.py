"""asyncpg implementations of the ports, on the open transaction, and the service's unit of
work built on them (``PgReferralsUnitOfWork``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any, TypeAlias

import asyncpg
from homeward.contracts.vocab import AgeBand, BedType, Cohort, LegalStatus, OutOfAreaReason, Urgency, WithdrawalReason

from ..domain.model import BedCount, Placement, Referral, Withdrawal
from ..ports import CapacityRepository, Config, ReferralRepository, ReferralsUnitOfWork
from ..views import BedCountView

Connection: TypeAlias = asyncpg.Connection  # type: ignore[type-arg]


def count_to_json(c: BedCount) -> dict[str, Any]:
    return BedCountView.model_validate(c).json_dict()


def count_from_json(d: Mapping[str, Any]) -> BedCount:
    return BedCountView.model_validate(d).to_count()


def count_from_row(r: Mapping[str, Any]) -> BedCount:
    return BedCount(
        site=r["site"],
        provider=r["provider"],
        area=r["site_area"],
        bed_type=BedType(r["bed_type"]),
        available_beds=r["available_beds"],
        total_beds=r["total_beds"],
        as_of=r["as_of"],
    )


def referral_from_row(r: Mapping[str, Any]) -> Referral:
    placement = None
    if r["placement_id"] is not None:
        placement = Placement(
            placement_id=r["placement_id"],
            referral_id=r["referral_id"],
            commissioner=r["commissioner"],
            provider=r["placed_provider"],
            site=r["placed_site"],
            site_area=r["placed_site_area"],
            bed_type=BedType(r["placed_bed_type"]),
            start_date=r["placed_on"],
            out_of_area=r["out_of_area"],
            out_of_area_reason=OutOfAreaReason(r["out_of_area_reason"]) if r["out_of_area_reason"] else None,
        )
    options = json.loads(r["local_options"]) if isinstance(r["local_options"], str) else r["local_options"]
    withdrawal = None
    if r["withdrawn_at"] is not None:
        withdrawal = Withdrawal(
            referral_id=r["referral_id"],
            commissioner=r["commissioner"],
            withdrawn_at=r["withdrawn_at"],
            reason=WithdrawalReason(r["withdrawal_reason"]),
            event_id=r["withdrawal_event_id"],
            organisation=r["withdrawn_by"],
        )
    return Referral(
        referral_id=r["referral_id"],
        patient_ref=r["patient_ref"],
        commissioner=r["commissioner"],
        home_area=r["home_area"],
        bed_type=BedType(r["bed_type"]),
        cohort=Cohort(r["cohort"]),
        age_band=AgeBand(r["age_band"]),
        urgency=Urgency(r["urgency"]),
        legal_status=LegalStatus(r["legal_status"]) if r["legal_status"] else None,
        need_arose_at=r["need_arose_at"],
        received_at=r["received_at"],
        local_options=tuple(count_from_json(o) for o in options),
        placement=placement,
        waited_hours=r["waited_hours"],
        triaged_as_of=r["triaged_as_of"],
        triage_id=r["triage_id"],
        withdrawal=withdrawal,
    )


class PgReferrals(ReferralRepository):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def get(self, referral_id: str) -> Referral | None:
        row = await self.conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
        return self.track(referral_from_row(row)) if row else None

    async def add(self, referral: Referral) -> None:
        self.track(referral)
        await self.conn.execute(
            """INSERT INTO referrals (referral_id, patient_ref, commissioner, home_area, bed_type, cohort, age_band,
                                      urgency, legal_status, need_arose_at, received_at, local_options,
                                      triaged_as_of, triage_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14)""",
            referral.referral_id,
            referral.patient_ref,
            referral.commissioner,
            referral.home_area,
            referral.bed_type.value,
            referral.cohort.value,
            referral.age_band.value,
            referral.urgency.value,
            referral.legal_status.value if referral.legal_status else None,
            referral.need_arose_at,
            referral.received_at,
            json.dumps([count_to_json(o) for o in referral.local_options]),
            referral.triaged_as_of,
            referral.triage_id,
        )

    async def save_triage(self, referral: Referral) -> None:
        await self.conn.execute(
            """UPDATE referrals SET local_options = $2::jsonb, triaged_as_of = $3, triage_id = $4
               WHERE referral_id = $1""",
            referral.referral_id,
            json.dumps([count_to_json(o) for o in referral.local_options]),
            referral.triaged_as_of,
            referral.triage_id,
        )

    async def triaged_with(self, area: str, bed_type: BedType, site: str | None, since: dt.datetime) -> list[Referral]:
        # No row locks: the triage lock of (area, bed type) orders re-triages, and a placement
        # written meanwhile touches other columns than save_triage does.
        rows = await self.conn.fetch(
            """SELECT * FROM referrals r
               WHERE r.home_area = $1 AND r.bed_type = $2 AND r.triaged_as_of >= $4
                 AND ($3::text IS NULL OR NOT EXISTS (
                     SELECT 1 FROM bed_reports b WHERE b.site = $3 AND b.bed_type = $2
                       AND b.as_of > $4 AND b.as_of <= r.triaged_as_of))
               ORDER BY r.referral_id""",
            area,
            bed_type.value,
            site,
            since,
        )
        return [self.track(referral_from_row(r)) for r in rows]

    async def save_withdrawal(self, referral: Referral) -> None:
        w = referral.withdrawal
        assert w is not None
        await self.conn.execute(
            """UPDATE referrals SET withdrawn_at = $2, withdrawal_reason = $3, withdrawal_event_id = $4,
                      withdrawn_by = $5
               WHERE referral_id = $1""",
            referral.referral_id,
            w.withdrawn_at,
            w.reason.value,
            w.event_id,
            w.organisation,
        )

    async def save_placement(self, referral: Referral) -> bool:
        p = referral.placement
        assert p is not None
        status = await self.conn.execute(
            """UPDATE referrals SET placement_id = $2, placed_on = $3, placed_at = $4, placed_provider = $5,
                      placed_site = $6, placed_site_area = $7, placed_bed_type = $8, out_of_area = $9,
                      out_of_area_reason = $10, waited_hours = $11
               WHERE referral_id = $1 AND placement_id IS NULL""",
            referral.referral_id,
            p.placement_id,
            p.start_date,
            p.placed_at,
            p.provider,
            p.site,
            p.site_area,
            p.bed_type.value,
            p.out_of_area,
            p.out_of_area_reason.value if p.out_of_area_reason else None,
            referral.waited_hours,
        )
        return bool(status == "UPDATE 1")

    async def arrived_while_parked(self, limit: int) -> list[str]:
        # The referral's row is the claim: another replica skips it, and a consumer's change to
        # it waits for this short transaction (which holds no other referral).
        rows = await self.conn.fetch(
            """SELECT referral_id FROM referrals
               WHERE referral_id IN (SELECT substr(awaiting, 10) FROM parking_lot
                                     WHERE status = 'parked' AND awaiting LIKE 'referral:%')
               ORDER BY referral_id LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        return [r["referral_id"] for r in rows]

    async def open_at(self, at: dt.datetime) -> list[Referral]:
        rows = await self.conn.fetch(
            """SELECT * FROM referrals WHERE need_arose_at <= $1 AND (placed_at IS NULL OR placed_at > $1)
                 AND (withdrawn_at IS NULL OR withdrawn_at > $1)
               ORDER BY referral_id""",
            at,
        )
        return [self.track(referral_from_row(r)) for r in rows]

    async def record_breach(
        self, referral_id: str, threshold_hours: int, breached_at: dt.datetime, event_id: str
    ) -> bool:
        added = await self.conn.fetchval(
            """INSERT INTO wait_breaches (referral_id, threshold_hours, breached_at, event_id) VALUES ($1, $2, $3, $4)
               ON CONFLICT DO NOTHING RETURNING 1""",
            referral_id,
            threshold_hours,
            breached_at,
            event_id,
        )
        return added is not None


def _area_lock(area: str, bed_type: BedType, purpose: str = "capacity") -> int:
    """A stable 63-bit advisory lock key for one area's total (or triage) of one bed type."""
    digest = hashlib.blake2b(f"{purpose}|{area}|{bed_type.value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class PgCapacity(CapacityRepository):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def try_lock_area(self, area: str, bed_type: BedType) -> bool:
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _area_lock(area, bed_type)))

    async def lock_area(self, area: str, bed_type: BedType) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", _area_lock(area, bed_type))

    async def mark_unsettled(self, area: str, bed_type: BedType) -> None:
        await self.conn.execute("INSERT INTO capacity_unsettled (area, bed_type) VALUES ($1, $2)", area, bed_type.value)

    async def unsettled(self) -> list[tuple[str, BedType]]:
        rows = await self.conn.fetch("SELECT DISTINCT area, bed_type FROM capacity_unsettled ORDER BY 1, 2")
        return [(r["area"], BedType(r["bed_type"])) for r in rows]

    async def settle(self, area: str, bed_type: BedType) -> int | None:
        last = await self.conn.fetchval(
            """WITH cleared AS (DELETE FROM capacity_unsettled WHERE area = $1 AND bed_type = $2 RETURNING id)
               SELECT max(id) FROM cleared""",
            area,
            bed_type.value,
        )
        return int(last) if last is not None else None

    async def as_of(self, area: str, bed_type: BedType, at: dt.datetime) -> list[BedCount]:
        # Each site that ever reported in the area, its latest count taken by ``at`` (ties: the
        # fewer free beds, then the event id, so arrival order never decides), kept if that
        # count still places it in the area.
        rows = await self.conn.fetch(
            """SELECT latest.* FROM (SELECT DISTINCT site FROM bed_reports WHERE site_area = $1 AND bed_type = $2) s
               CROSS JOIN LATERAL (
                   SELECT * FROM bed_reports b WHERE b.site = s.site AND b.bed_type = $2 AND b.as_of <= $3
                   ORDER BY b.as_of DESC, b.available_beds, b.event_id DESC LIMIT 1) latest
               WHERE latest.site_area = $1 ORDER BY latest.site""",
            area,
            bed_type.value,
            at,
        )
        return [count_from_row(r) for r in rows]

    async def areas_of(self, site: str, bed_type: BedType) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT DISTINCT site_area FROM bed_reports WHERE site = $1 AND bed_type = $2 ORDER BY 1",
            site,
            bed_type.value,
        )
        return [r["site_area"] for r in rows]

    async def try_lock_triage(self, area: str, bed_type: BedType) -> bool:
        key = _area_lock(area, bed_type, "triage")
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", key))

    async def lock_triage(self, area: str, bed_type: BedType) -> None:
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", _area_lock(area, bed_type, "triage"))

    async def mark_triage_unsettled(self, area: str, bed_type: BedType, since: dt.datetime) -> None:
        await self.conn.execute(
            "INSERT INTO triage_unsettled (area, bed_type, since) VALUES ($1, $2, $3)", area, bed_type.value, since
        )

    async def triage_unsettled(self) -> list[tuple[str, BedType]]:
        rows = await self.conn.fetch("SELECT DISTINCT area, bed_type FROM triage_unsettled ORDER BY 1, 2")
        return [(r["area"], BedType(r["bed_type"])) for r in rows]

    async def settle_triage(self, area: str, bed_type: BedType) -> dt.datetime | None:
        since: dt.datetime | None = await self.conn.fetchval(
            """WITH cleared AS (DELETE FROM triage_unsettled WHERE area = $1 AND bed_type = $2 RETURNING since)
               SELECT min(since) FROM cleared""",
            area,
            bed_type.value,
        )
        return since

    async def held(self, site: str, bed_type: BedType) -> BedCount | None:
        row = await self.conn.fetchrow(
            "SELECT * FROM bed_availability WHERE site = $1 AND bed_type = $2", site, bed_type.value
        )
        return count_from_row(row) if row else None

    async def record(self, event_id: str, count: BedCount, accepted: bool) -> None:
        await self.conn.execute(
            """INSERT INTO bed_reports (event_id, site, bed_type, provider, site_area, available_beds, total_beds,
                                        as_of, accepted)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING""",
            event_id,
            count.site,
            count.bed_type.value,
            count.provider,
            count.area,
            count.available_beds,
            count.total_beds,
            count.as_of,
            accepted,
        )

    async def save(self, count: BedCount) -> None:
        await self.conn.execute(
            """INSERT INTO bed_availability (site, bed_type, provider, site_area, available_beds, total_beds, as_of)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (site, bed_type) DO UPDATE SET provider = EXCLUDED.provider,
                   site_area = EXCLUDED.site_area, available_beds = EXCLUDED.available_beds,
                   total_beds = EXCLUDED.total_beds, as_of = EXCLUDED.as_of
               WHERE bed_availability.as_of < EXCLUDED.as_of""",
            count.site,
            count.bed_type.value,
            count.provider,
            count.area,
            count.available_beds,
            count.total_beds,
            count.as_of,
        )

    async def in_area(self, area: str, bed_type: BedType) -> list[BedCount]:
        rows = await self.conn.fetch(
            "SELECT * FROM bed_availability WHERE site_area = $1 AND bed_type = $2 ORDER BY site", area, bed_type.value
        )
        return [count_from_row(r) for r in rows]


class PgReferralsUnitOfWork(ReferralsUnitOfWork):
    """The unit of work on PostgreSQL: the kit builds one per event (and a job per transaction)."""

    def __init__(self, conn: Connection, *args: Any, config: Config, **kwargs: Any) -> None:
        super().__init__(conn, *args, **kwargs)
        self.config = config
        self.referrals = PgReferrals(conn)
        self.capacity = PgCapacity(conn)
