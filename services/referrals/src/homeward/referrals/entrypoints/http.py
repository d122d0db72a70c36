"""The JSON read API. Every query takes an optional ``as_of=YYYY-MM-DD``: the answer as it
stood at the end of that day (UTC); without it, as of the service clock's now.

Staff only (docs/staff-access.md): commissioner staff see their organisation's referrals,
unmet need and waits (filtered in SQL); local capacity (beds, no people) any signed-in staff;
the counts ops. Every answer that shows referrals is written to the audit trail."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from homeward.contracts.vocab import BedType, Urgency
from homeward.kit import audit
from homeward.kit.auth import COMMISSIONER_STAFF, OPS, Forbidden, own_organisation, require
from homeward.kit.clock import Clock
from homeward.kit.http import answers_bad_requests, caller_of, query_date, query_enum
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..adapters.queries import ReadModel
from ..domain.reports import time_to_placement, unmet_need
from ..domain.rules import end_of_day
from ..views import AreaCapacityView, ReferralView


def _text(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return raw.strip().upper() if raw and raw.strip() else None


def _earliest(*dates: dt.date | None) -> dt.date | None:
    given = [d for d in dates if d is not None]
    return min(given) if given else None


@dataclass(frozen=True)
class _Api:
    """What every resource's routes share: the read model, the clock and the wait thresholds."""

    pool: asyncpg.Pool  # type: ignore[type-arg]
    read: ReadModel
    clock: Clock
    thresholds: Mapping[Urgency, Sequence[int]]

    def commissioner_of(self, request: Request) -> str:
        """The caller's own organisation (403 if another is asked for)."""
        return own_organisation(require(caller_of(request), *STAFF), _text(request, "commissioner"))

    def instant(self, request: Request) -> tuple[dt.date | None, dt.datetime]:
        as_of = query_date(request, "as_of")
        return as_of, end_of_day(as_of) if as_of else self.clock.now()

    def period(self, request: Request) -> tuple[dt.date | None, dt.date | None]:
        """``from`` and ``to``, the latter no later than ``as_of`` (or today)."""
        as_of, at = self.instant(request)
        return query_date(request, "from"), _earliest(query_date(request, "to"), as_of or at.date())


STAFF = sorted(COMMISSIONER_STAFF)


def _period_json(first: dt.date | None, last: dt.date | None) -> dict[str, Any]:
    return {"from": first.isoformat() if first else None, "to": last.isoformat() if last else None}


def referral_routes(api: _Api) -> list[BaseRoute]:
    async def open_referrals(request: Request) -> Response:
        _, at = api.instant(request)
        commissioner = api.commissioner_of(request)
        urgency = query_enum(request, "urgency", Urgency)
        rows = await api.read.open_referrals(at, commissioner, urgency)
        items = [ReferralView.at(r, at, api.thresholds).json_dict() for r in rows]
        await audit.record(
            api.pool, "referrals", caller_of(request), request, audit.references(items, "referral_id", "patient_ref")
        )
        items.sort(key=lambda r: (-r["waited_hours"], r["referral_id"]))
        return JSONResponse({"as_of": at.isoformat(), "count": len(items), "referrals": items})

    async def one_referral(request: Request) -> Response:
        _, at = api.instant(request)
        caller = require(caller_of(request), *STAFF)
        referral = await api.read.referral(request.path_params["referral_id"])
        if referral is None:
            return JSONResponse({"error": "no such referral"}, status_code=404)
        if referral.commissioner != caller.org:
            raise Forbidden(f"referral {referral.referral_id} is not one of {caller.org}'s")
        body = ReferralView.at(referral, at, api.thresholds).json_dict()
        await audit.record(
            api.pool, "referrals", caller, request, audit.references([body], "referral_id", "patient_ref")
        )
        body["wait_breaches"] = await api.read.breaches(referral.referral_id)
        return JSONResponse(body)

    return [
        Route("/referrals/open", answers_bad_requests(open_referrals)),
        Route("/referrals/{referral_id}", answers_bad_requests(one_referral)),
    ]


def capacity_routes(api: _Api) -> list[BaseRoute]:
    async def capacity(request: Request) -> Response:
        caller_of(request)  # beds, not people: any signed-in staff
        as_of, at = api.instant(request)
        bed_type = query_enum(request, "bed_type", BedType)
        counts = await api.read.capacity(at if as_of else None, _text(request, "area"), bed_type)
        areas = [a.json_dict() for a in AreaCapacityView.of_counts(counts)]
        return JSONResponse({"as_of": at.isoformat(), "capacity": areas})

    return [Route("/capacity", answers_bad_requests(capacity))]


def report_routes(api: _Api) -> list[BaseRoute]:
    async def unmet(request: Request) -> Response:
        first, last = api.period(request)
        commissioner = api.commissioner_of(request)
        placements = await api.read.out_of_area_placements(first, last, _text(request, "area"), commissioner)
        rows = [dataclasses.asdict(r) for r in unmet_need(placements)]
        return JSONResponse({**_period_json(first, last), "total": sum(r["count"] for r in rows), "rows": rows})

    async def time_to_place(request: Request) -> Response:
        first, last = api.period(request)
        overall, by_urgency = time_to_placement(
            await api.read.placement_waits(first, last, api.commissioner_of(request))
        )
        return JSONResponse(
            {
                **_period_json(first, last),
                **dataclasses.asdict(overall),
                "by_urgency": {u: dataclasses.asdict(s) for u, s in by_urgency.items()},
            }
        )

    return [
        Route("/unmet-need", answers_bad_requests(unmet)),
        Route("/time-to-placement", answers_bad_requests(time_to_place)),
    ]


def summary_routes(api: _Api) -> list[BaseRoute]:
    async def summary(request: Request) -> Response:
        require(caller_of(request), OPS)  # every organisation's counts: the status page
        _, at = api.instant(request)
        return JSONResponse({"service": "referrals", "as_of": at.isoformat(), **await api.read.counts(at)})

    return [Route("/summary", answers_bad_requests(summary))]


def routes(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    clock: Clock,
    thresholds: Mapping[Urgency, Sequence[int]],
) -> list[BaseRoute]:
    api = _Api(pool, ReadModel(pool), clock, thresholds)
    return [*referral_routes(api), *capacity_routes(api), *report_routes(api), *summary_routes(api)]
