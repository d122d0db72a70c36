"""``GET /measures``: the NHS out-of-area placement measures for a month or any period
(homeward.placements.domain.measures has the definitions)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from homeward.kit.clock import Clock
from homeward.kit.http import BadRequest, answers_bad_requests, query_date
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..adapters.repository import load_placements
from ..domain.measures import DISTANCE_BANDS, LENGTH_OF_STAY_BANDS, REASON_CODES, Period, measures, total

# Out-of-area placements that were placed on some day up to the period's end and had not left
# before it began, or that started or ended in it.
OVERLAPPING = "p.out_of_area AND p.start_date <= $1 AND (p.end_date IS NULL OR p.end_date >= $2)"


def period_of(request: Request) -> Period:
    month = request.query_params.get("month", "").strip()
    start, end = query_date(request, "from"), query_date(request, "to")
    if month and (start or end):
        raise BadRequest("give either month or from and to, not both")
    try:
        if month:
            return Period.parse_month(month)
        if start is None or end is None:
            raise BadRequest("give month=YYYY-MM, or from=YYYY-MM-DD and to=YYYY-MM-DD")
        return Period(start, end)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


async def load_measures(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    period: Period,
    as_of: dt.date,
    commissioners: list[str] | None = None,
) -> dict[str, Any]:
    """The measures of ``period`` as of ``as_of``, for ``commissioners`` (every one when None)."""
    end = min(period.end, as_of)
    where, args = OVERLAPPING, list[Any]([end, period.start])
    if commissioners is not None:
        where += " AND p.commissioner = ANY($3::text[])"
        args.append(commissioners)
    async with pool.acquire() as conn:
        found = await load_placements(conn, where, args, order="p.commissioner, p.placement_id")
    by = measures(found, period, as_of)
    if commissioners is not None:
        by = {c: by.get(c) or total({}) for c in commissioners}  # none placed out of area: zeros
    return {
        "period": {
            "label": period.label,
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "measured_to": end.isoformat(),
            "complete": period.end < as_of,
        },
        "as_of": as_of.isoformat(),
        "bands": {
            "length_of_stay_nights": [label for label, _, _ in LENGTH_OF_STAY_BANDS],
            "distance_km": [label for label, _, _ in DISTANCE_BANDS] + ["unknown"],
            "reason_codes": list(REASON_CODES),
        },
        "commissioners": by,
        "total": total(by),
    }


def build_measures_routes(pool: asyncpg.Pool, clock: Clock) -> list[BaseRoute]:  # type: ignore[type-arg]
    @answers_bad_requests
    async def get_measures(request: Request) -> Response:
        as_of = query_date(request, "as_of") or clock.today()
        period = period_of(request)
        raw = request.query_params.get("commissioner", "").strip()
        commissioners = [c.strip().upper() for c in raw.split(",") if c.strip()] or None
        return JSONResponse(await load_measures(pool, period, as_of, commissioners))

    return [Route("/measures", get_measures)]
