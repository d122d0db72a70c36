"""The read side: queries behind the HTTP API, answered "as of" an instant."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeAlias

import asyncpg
from homeward.contracts.events import PlacementRegistered, ReferralWithdrawn
from homeward.contracts.vocab import BedType, OutOfAreaReason, Urgency

from ..domain.model import BedCount, Referral
from ..domain.reports import OutOfAreaPlacement
from .postgres import count_from_row, referral_from_row

Pool: TypeAlias = asyncpg.Pool  # type: ignore[type-arg]


class ReadModel:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def open_referrals(
        self, at: dt.datetime, commissioner: str | None = None, urgency: Urgency | None = None
    ) -> list[Referral]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT * FROM referrals
                   WHERE need_arose_at <= $1 AND (placed_at IS NULL OR placed_at > $1)
                     AND (withdrawn_at IS NULL OR withdrawn_at > $1)
                     AND ($2::text IS NULL OR commissioner = $2) AND ($3::text IS NULL OR urgency = $3)
                   ORDER BY need_arose_at, referral_id""",
                at,
                commissioner,
                urgency.value if urgency else None,
            )
        return [referral_from_row(r) for r in rows]

    async def referral(self, referral_id: str) -> Referral | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1", referral_id)
        return referral_from_row(row) if row else None

    async def breaches(self, referral_id: str) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT threshold_hours, breached_at FROM wait_breaches WHERE referral_id = $1 ORDER BY 1",
                referral_id,
            )
        return [{"threshold_hours": r["threshold_hours"], "breached_at": r["breached_at"].isoformat()} for r in rows]

    async def capacity(self, at: dt.datetime | None, area: str | None, bed_type: BedType | None) -> list[BedCount]:
        """The figure held per site and bed type; with ``at``, the latest count taken by then."""
        async with self.pool.acquire() as conn:
            if at is None:
                rows = await conn.fetch(
                    """SELECT * FROM bed_availability
                       WHERE ($1::text IS NULL OR site_area = $1) AND ($2::text IS NULL OR bed_type = $2)
                       ORDER BY site_area, bed_type, site""",
                    area,
                    bed_type.value if bed_type else None,
                )
            else:
                rows = await conn.fetch(
                    """SELECT * FROM (
                           SELECT DISTINCT ON (site, bed_type) * FROM bed_reports
                           WHERE as_of <= $1 ORDER BY site, bed_type, as_of DESC, id DESC) latest
                       WHERE ($2::text IS NULL OR site_area = $2) AND ($3::text IS NULL OR bed_type = $3)
                       ORDER BY site_area, bed_type, site""",
                    at,
                    area,
                    bed_type.value if bed_type else None,
                )
        return [count_from_row(r) for r in rows]

    async def out_of_area_placements(
        self,
        first: dt.date | None,
        last: dt.date | None,
        area: str | None = None,
        commissioner: str | None = None,
    ) -> list[OutOfAreaPlacement]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT referral_id, commissioner, home_area, bed_type, placed_on, out_of_area_reason
                   FROM referrals
                   WHERE placement_id IS NOT NULL AND out_of_area
                     AND ($1::date IS NULL OR placed_on >= $1) AND ($2::date IS NULL OR placed_on <= $2)
                     AND ($3::text IS NULL OR home_area = $3) AND ($4::text IS NULL OR commissioner = $4)""",
                first,
                last,
                area,
                commissioner,
            )
        return [
            OutOfAreaPlacement(
                referral_id=r["referral_id"],
                commissioner=r["commissioner"],
                home_area=r["home_area"],
                bed_type=BedType(r["bed_type"]),
                placed_on=r["placed_on"],
                reason=OutOfAreaReason(r["out_of_area_reason"]) if r["out_of_area_reason"] else None,
            )
            for r in rows
        ]

    async def placement_waits(
        self, first: dt.date | None, last: dt.date | None, commissioner: str | None = None
    ) -> list[tuple[Urgency, int]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT urgency, waited_hours FROM referrals
                   WHERE placement_id IS NOT NULL
                     AND ($1::date IS NULL OR placed_on >= $1) AND ($2::date IS NULL OR placed_on <= $2)
                     AND ($3::text IS NULL OR commissioner = $3)""",
                first,
                last,
                commissioner,
            )
        return [(Urgency(r["urgency"]), r["waited_hours"]) for r in rows]

    async def counts(self, at: dt.datetime) -> dict[str, Any]:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT
                     count(*) FILTER (WHERE need_arose_at <= $1 AND (placed_at IS NULL OR placed_at > $1)
                     AND (withdrawn_at IS NULL OR withdrawn_at > $1)) AS open,
                     count(*) FILTER (WHERE placed_at <= $1) AS placed,
                     count(*) FILTER (WHERE withdrawn_at <= $1 AND (placed_at IS NULL OR placed_at > $1)) AS withdrawn,
                     count(*) FILTER (WHERE placed_at <= $1 AND out_of_area) AS placed_out_of_area,
                     count(*) FILTER (WHERE placed_at <= $1 AND out_of_area AND out_of_area_reason = '10')
                       AS out_of_area_no_local_bed
                   FROM referrals""",
                at,
            )
            by_urgency = await conn.fetch(
                """SELECT urgency, count(*) AS n FROM referrals
                   WHERE need_arose_at <= $1 AND (placed_at IS NULL OR placed_at > $1)
                     AND (withdrawn_at IS NULL OR withdrawn_at > $1) GROUP BY urgency""",
                at,
            )
            breaches = await conn.fetchval("SELECT count(*) FROM wait_breaches WHERE breached_at <= $1", at)
            sites = await conn.fetchval("SELECT count(DISTINCT site) FROM bed_reports WHERE as_of <= $1", at)
            stale = await conn.fetchval("SELECT count(*) FROM bed_reports WHERE NOT accepted")
            # What waits in the kit's parking lot for its referral, and the placements refused
            # when their referral came (dead-lettered, kept in the lot as rejected).
            parked = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE status = 'parked' AND event_type = $1) AS placements,
                          count(*) FILTER (WHERE status = 'rejected' AND event_type = $1) AS refused,
                          count(*) FILTER (WHERE status = 'parked' AND event_type = $2) AS withdrawals
                   FROM parking_lot WHERE awaiting LIKE 'referral:%'""",
                PlacementRegistered.event_type(),
                ReferralWithdrawn.event_type(),
            )
            unsettled = await conn.fetchval("SELECT count(DISTINCT (area, bed_type)) FROM capacity_unsettled")
            triage_unsettled = await conn.fetchval("SELECT count(DISTINCT (area, bed_type)) FROM triage_unsettled")
        return {
            "open_referrals": row["open"],
            "open_by_urgency": {r["urgency"]: r["n"] for r in by_urgency},
            "placed": row["placed"],
            "withdrawn": row["withdrawn"],
            "placed_out_of_area": row["placed_out_of_area"],
            "placed_out_of_area_no_local_bed": row["out_of_area_no_local_bed"],
            "wait_breaches_reported": breaches,
            "sites_reporting": sites,
            "stale_capacity_updates_ignored": stale,
            "parked_placements": parked["placements"],
            "parked_placements_refused": parked["refused"],
            "capacity_totals_unsettled": unsettled,
            "parked_withdrawals": parked["withdrawals"],
            "triage_unsettled": triage_unsettled,
        }
