"""Queries behind the HTTP read API (no writes)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
from homeward.contracts.vocab import BedType, Cohort
from homeward.kit import parking
from homeward.kit.parking import STATUSES, Parked

from ..domain import Placement
from ..ports import placement_key
from .repository import load_placements

Pool: TypeAlias = asyncpg.Pool  # type: ignore[type-arg]

ACTIVE = "p.start_date <= $1 AND (p.end_date IS NULL OR p.end_date > $1)"


@dataclass(frozen=True)
class Capacity:
    area: str
    bed_type: str
    available_beds: int
    as_of: dt.datetime


class ReadModel:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def active(
        self,
        as_of: dt.date,
        *,
        commissioner: str | None = None,
        out_of_area: bool | None = None,
        cohort: Cohort | None = None,
        bed_type: BedType | None = None,
        provider: str | None = None,
    ) -> list[Placement]:
        """Active placements; ``provider`` keeps those at that provider (or that one site)."""
        where: list[str] = [ACTIVE]
        args: list[Any] = [as_of]
        if provider is not None:
            args.append(provider)
            where.append(f"(p.provider = ${len(args)} OR p.provider_site = ${len(args)})")
        for column, value in (
            ("commissioner", commissioner),
            ("out_of_area", out_of_area),
            ("cohort", cohort.value if cohort else None),
            ("bed_type", bed_type.value if bed_type else None),
        ):
            if value is not None:
                args.append(value)
                where.append(f"p.{column} = ${len(args)}")
        async with self.pool.acquire() as conn:
            return await load_placements(conn, " AND ".join(where), args, order="p.commissioner, p.placement_id")

    async def placement(self, placement_id: str) -> Placement | None:
        async with self.pool.acquire() as conn:
            found = await load_placements(conn, "p.placement_id = $1", [placement_id])
        return found[0] if found else None

    async def repatriations(
        self,
        *,
        start: dt.date | None = None,
        end: dt.date | None = None,
        commissioner: str | None = None,
        placement_id: str | None = None,
        provider: str | None = None,
    ) -> list[dict[str, Any]]:
        where: list[str] = ["TRUE"]
        args: list[Any] = []
        for clause, value in (
            ("repatriated_on >= $?", start),
            ("repatriated_on <= $?", end),
            ("commissioner = $?", commissioner),
            ("(from_placement_id = $? OR to_placement_id = $?)", placement_id),
            (
                "EXISTS (SELECT 1 FROM placements x WHERE x.placement_id IN (from_placement_id, to_placement_id)"
                " AND (x.provider = $? OR x.provider_site = $?))",
                provider,
            ),
        ):
            if value is not None:
                args.append(value)
                where.append(clause.replace("$?", f"${len(args)}"))
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT * FROM repatriations WHERE {" AND ".join(where)}
                    ORDER BY repatriated_on, from_placement_id""",
                *args,
            )
        out = []
        for r in rows:
            row = dict(r)
            row["funding"] = json.loads(row["funding"]) if isinstance(row["funding"], str) else row["funding"]
            row.pop("recorded_at", None)
            out.append(row)
        return out

    async def repatriation_counts(self, as_of: dt.date) -> dict[str, int]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT commissioner, count(*) AS n FROM repatriations
                   WHERE repatriated_on <= $1 GROUP BY commissioner""",
                as_of,
            )
        return {r["commissioner"]: int(r["n"]) for r in rows}

    async def capacity(self, as_of: dt.date) -> dict[tuple[str, str], Capacity]:
        """The latest LocalCapacityChanged per (area, bed type) reported by the end of ``as_of``."""
        until = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), dt.UTC)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT DISTINCT ON (area, bed_type) area, bed_type, available_beds, as_of
                   FROM local_capacity WHERE as_of < $1 ORDER BY area, bed_type, as_of DESC""",
                until,
            )
        return {
            (r["area"], r["bed_type"]): Capacity(r["area"], r["bed_type"], r["available_beds"], r["as_of"])
            for r in rows
        }

    async def parked(self, placement_id: str) -> list[Parked]:
        """What waited (or waits) in the kit's parking lot for this placement, oldest fact first."""
        async with self.pool.acquire() as conn:
            found, _ = await parking.listing(conn, statuses=STATUSES, awaiting=placement_key(placement_id))
        return sorted(found, key=lambda p: (p.event_time, p.id))

    async def parked_count(self) -> int:
        """How many events wait for a placement not yet known."""
        async with self.pool.acquire() as conn:
            _, counts = await parking.listing(conn, limit=0)
        return counts["parked"]

    async def alerts(self, placement_id: str) -> list[dict[str, Any]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT review_type, due_date, kind, level, event_id, emitted_at FROM review_alerts
                   WHERE placement_id = $1 ORDER BY due_date, kind, level""",
                placement_id,
            )
        return [dict(r) for r in rows]
