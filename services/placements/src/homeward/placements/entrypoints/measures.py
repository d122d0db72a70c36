"""``GET /measures``: the NHS out-of-area placement measures for a month or any period
(homeward.placements.domain.measures has the definitions).

Figures, not people: no answer names a placement or a patient reference. Who sees which:
commissioner staff and finance their own organisation's (asking for another's is 403);
provider staff those of the placements at their own sites; ops every commissioner's, like the
other overview figures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from homeward.kit.auth import FINANCE, OPS, PROVIDER, Caller, PlacementScope, TokenVerifier, own_organisation, require
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
    scope: PlacementScope | None = None,
) -> dict[str, Any]:
    """The measures of ``period`` as of ``as_of``, for ``commissioners`` (every one when None),
    over the placements ``scope`` allows (all when None)."""
    end = min(period.end, as_of)
    where, args = OVERLAPPING, list[Any]([end, period.start])
    if commissioners is not None:
        where += " AND p.commissioner = ANY($3::text[])"
        args.append(commissioners)
    async with pool.acquire() as conn:
        found = await load_placements(conn, where, args, order="p.commissioner, p.placement_id")
    if scope is not None:
        found = [p for p in found if scope.allows(p.commissioner, p.provider, p.provider_site)]
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
    verifier = TokenVerifier()

    async def caller(request: Request) -> Caller:
        """The caller the kit's sign-in middleware found, or (mounted without it) the bearer
        token verified here: never an anonymous answer."""
        found = request.scope.get("homeward.caller")
        if isinstance(found, Caller):
            return found
        return await verifier.verify_header(request.headers.get("authorization"))

    @answers_bad_requests
    async def get_measures(request: Request) -> Response:
        who = await caller(request)
        as_of = query_date(request, "as_of") or clock.today()
        period = period_of(request)
        raw = request.query_params.get("commissioner", "").strip()
        commissioners = [c.strip().upper() for c in raw.split(",") if c.strip()] or None
        scope = None
        if who.commissioner_staff or who.role == FINANCE:
            for code in commissioners or [who.org]:
                own_organisation(who, code)
            commissioners = [who.org]
        elif who.role == PROVIDER:
            scope = PlacementScope(provider=who.org)
        else:
            require(who, OPS)
        return JSONResponse(await load_measures(pool, period, as_of, commissioners, scope))

    return [Route("/measures", get_measures)]
