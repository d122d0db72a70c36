"""The JSON read API. Every query takes an optional ``as_of=YYYY-MM-DD``: the answer as it
stood at the end of that day (UTC); without it, as of the service clock's now.

Staff only (docs/staff-access.md): commissioner staff see their organisation's referrals,
unmet need and waits (filtered in SQL); local capacity (beds, no people) any signed-in staff;
the counts ops. Every answer that shows referrals is written to the audit trail."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
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

from ..adapters.postgres import count_to_json
from ..adapters.queries import ReadModel
from ..domain.model import BedCount, Referral
from ..domain.reports import time_to_placement, unmet_need
from ..domain.rules import area_total, breached_thresholds, end_of_day, next_threshold


def _text(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return raw.strip().upper() if raw and raw.strip() else None


def _earliest(*dates: dt.date | None) -> dt.date | None:
    given = [d for d in dates if d is not None]
    return min(given) if given else None


def referral_json(referral: Referral, at: dt.datetime, thresholds: Mapping[Urgency, Sequence[int]]) -> dict[str, Any]:
    limits = thresholds.get(referral.urgency, ())
    placement = referral.placement
    return {
        "referral_id": referral.referral_id,
        "patient_ref": referral.patient_ref,
        "commissioner": referral.commissioner,
        "home_area": referral.home_area,
        "bed_type": referral.bed_type.value,
        "cohort": referral.cohort.value,
        "age_band": referral.age_band.value,
        "urgency": referral.urgency.value,
        "need_arose_at": referral.need_arose_at.isoformat(),
        "received_at": referral.received_at.isoformat(),
        "open": referral.open_at(at),
        "waited_hours": referral.wait_hours(at) if referral.open_at(at) else referral.waited_hours,
        "breached_thresholds": breached_thresholds(referral.need_arose_at, limits, at) if referral.open_at(at) else [],
        "next_threshold_hours": next_threshold(referral.need_arose_at, limits, at) if referral.open_at(at) else None,
        "local_options_at_triage": [count_to_json(o) for o in referral.local_options],
        "placement": None
        if placement is None
        else {
            "placement_id": placement.placement_id,
            "provider": placement.provider,
            "site": placement.site,
            "site_area": placement.site_area,
            "start_date": placement.start_date.isoformat(),
            "out_of_area": placement.out_of_area,
            "out_of_area_reason": placement.out_of_area_reason.value if placement.out_of_area_reason else None,
        },
    }


def capacity_json(counts: Sequence[BedCount]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[BedCount]] = {}
    for c in counts:
        groups.setdefault((c.area, c.bed_type.value), []).append(c)
    return [
        {
            "area": area,
            "bed_type": bed_type,
            "available_beds": area_total(sites),
            "as_of": max(s.as_of for s in sites).isoformat(),
            "sites": [
                {
                    "site": s.site,
                    "provider": s.provider,
                    "available_beds": s.available_beds,
                    "total_beds": s.total_beds,
                    "as_of": s.as_of.isoformat(),
                }
                for s in sorted(sites, key=lambda s: s.site)
            ],
        }
        for (area, bed_type), sites in sorted(groups.items())
    ]


def routes(
    pool: asyncpg.Pool,  # type: ignore[type-arg]
    clock: Clock,
    thresholds: Mapping[Urgency, Sequence[int]],
) -> list[BaseRoute]:
    read = ReadModel(pool)
    staff = sorted(COMMISSIONER_STAFF)

    def commissioner_of(request: Request) -> str:
        """The caller's own organisation (403 if another is asked for)."""
        return own_organisation(require(caller_of(request), *staff), _text(request, "commissioner"))

    def instant(request: Request) -> tuple[dt.date | None, dt.datetime]:
        as_of = query_date(request, "as_of")
        return as_of, end_of_day(as_of) if as_of else clock.now()

    async def open_referrals(request: Request) -> Response:
        _, at = instant(request)
        commissioner = commissioner_of(request)
        urgency = query_enum(request, "urgency", Urgency)
        rows = await read.open_referrals(at, commissioner, urgency)
        items = [referral_json(r, at, thresholds) for r in rows]
        await audit.record(
            pool, "referrals", caller_of(request), request, audit.references(items, "referral_id", "patient_ref")
        )
        items.sort(key=lambda r: (-r["waited_hours"], r["referral_id"]))
        return JSONResponse({"as_of": at.isoformat(), "count": len(items), "referrals": items})

    async def one_referral(request: Request) -> Response:
        _, at = instant(request)
        caller = require(caller_of(request), *staff)
        referral = await read.referral(request.path_params["referral_id"])
        if referral is None:
            return JSONResponse({"error": "no such referral"}, status_code=404)
        if referral.commissioner != caller.org:
            raise Forbidden(f"referral {referral.referral_id} is not one of {caller.org}'s")
        body = referral_json(referral, at, thresholds)
        await audit.record(pool, "referrals", caller, request, audit.references([body], "referral_id", "patient_ref"))
        body["wait_breaches"] = await read.breaches(referral.referral_id)
        return JSONResponse(body)

    async def capacity(request: Request) -> Response:
        caller_of(request)  # beds, not people: any signed-in staff
        as_of, at = instant(request)
        counts = await read.capacity(
            at if as_of else None, _text(request, "area"), query_enum(request, "bed_type", BedType)
        )
        return JSONResponse({"as_of": at.isoformat(), "capacity": capacity_json(counts)})

    async def unmet(request: Request) -> Response:
        as_of, at = instant(request)
        first = query_date(request, "from")
        last = _earliest(query_date(request, "to"), as_of or at.date())
        placements = await read.out_of_area_placements(first, last, _text(request, "area"), commissioner_of(request))
        rows = [dataclasses.asdict(r) for r in unmet_need(placements)]
        return JSONResponse(
            {
                "from": first.isoformat() if first else None,
                "to": last.isoformat() if last else None,
                "total": sum(r["count"] for r in rows),
                "rows": rows,
            }
        )

    async def time_to_place(request: Request) -> Response:
        as_of, at = instant(request)
        first = query_date(request, "from")
        last = _earliest(query_date(request, "to"), as_of or at.date())
        overall, by_urgency = time_to_placement(await read.placement_waits(first, last, commissioner_of(request)))
        return JSONResponse(
            {
                "from": first.isoformat() if first else None,
                "to": last.isoformat() if last else None,
                **dataclasses.asdict(overall),
                "by_urgency": {u: dataclasses.asdict(s) for u, s in by_urgency.items()},
            }
        )

    async def summary(request: Request) -> Response:
        require(caller_of(request), OPS)  # every organisation's counts: the status page
        _, at = instant(request)
        return JSONResponse({"service": "referrals", "as_of": at.isoformat(), **await read.counts(at)})

    return [
        Route("/referrals/open", answers_bad_requests(open_referrals)),
        Route("/referrals/{referral_id}", answers_bad_requests(one_referral)),
        Route("/capacity", answers_bad_requests(capacity)),
        Route("/unmet-need", answers_bad_requests(unmet)),
        Route("/time-to-placement", answers_bad_requests(time_to_place)),
        Route("/summary", answers_bad_requests(summary)),
    ]
