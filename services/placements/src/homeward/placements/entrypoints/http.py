"""The read API: JSON over HTTP, every query "as of" a date (``as_of=YYYY-MM-DD``, default today
by the service clock). Never returns an NHS number: people are identified by ``patient_ref``.

Staff only (docs/staff-access.md): commissioner staff see their organisation's placements,
provider staff those at their own sites (filtered in SQL), ops the overview counts (with how
many events wait in the parking lot: the kit's ``/admin/parked`` lists them); finance the counts
of their organisation. Every answer that shows placements appends a row to the audit trail
naming them. The payloads are the pydantic views of ``entrypoints.views``; the routes are built
one resource at a time and assembled in ``build_routes``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from homeward.contracts.vocab import BedType, Cohort
from homeward.kit import audit
from homeward.kit.auth import COMMISSIONER_STAFF, FINANCE, OPS, Forbidden, PlacementScope, require
from homeward.kit.clock import Clock
from homeward.kit.http import (
    BadRequest,
    answers_bad_requests,
    caller_of,
    query_bool,
    query_date,
    query_enum,
    query_int,
)
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..adapters.read_model import ReadModel
from ..domain import Placement, RateEntry, alert_for
from .measures import build_measures_routes
from .views import (
    CandidateView,
    OverdueReviewView,
    ParkedView,
    PlacementDetailView,
    PlacementView,
    RateView,
    ReviewDoneView,
    ScheduleView,
    UpcomingReviewView,
    jsonable,
)

SERVICE = "placements"

COUNTS = (
    "active_out_of_area",
    "active_in_area",
    "inappropriate",
    "overdue_reviews",
    "repatriations",
    "awaiting_agreement",
)


def ok(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(jsonable(body))


def overdue(placements: list[Placement], as_of: dt.date) -> list[OverdueReviewView]:
    rows = []
    for p in placements:
        for schedule in p.schedules_as_of(as_of):
            alert = alert_for(schedule, today=as_of, end_date=p.end_date)
            if alert is not None and alert.kind == "overdue":
                rows.append(OverdueReviewView.of(p, schedule, days_overdue=alert.days, escalation_level=alert.level))
    return sorted(rows, key=lambda r: (-r.days_overdue, r.placement_id, r.review_type.value))


def upcoming(placements: list[Placement], as_of: dt.date, within_days: int) -> list[UpcomingReviewView]:
    horizon = as_of + dt.timedelta(days=within_days)
    rows = []
    for p in placements:
        for schedule in p.schedules_as_of(as_of):
            due = schedule.due_date
            if as_of <= due <= horizon and (p.end_date is None or due < p.end_date):
                rows.append(UpcomingReviewView.of(p, schedule, days_until_due=(due - as_of).days))
    return sorted(rows, key=lambda r: (r.due_date, r.placement_id, r.review_type.value))


def rates_in_force(p: Placement) -> set[RateEntry]:
    """For each effective date, the statement that stands (the latest made)."""
    latest: dict[dt.date, RateEntry] = {}
    for e in p.rates:
        if e.held:
            continue
        if e.effective_date not in latest or e.order > latest[e.effective_date].order:
            latest[e.effective_date] = e
    return set(latest.values())


@dataclass(frozen=True)
class Api:
    """What every resource's routes share: the read model, the clock, who may see what, and the
    audit trail."""

    pool: asyncpg.Pool  # type: ignore[type-arg]
    clock: Clock
    model: ReadModel

    def as_of(self, request: Request) -> dt.date:
        return query_date(request, "as_of") or self.clock.today()

    def scope(self, request: Request) -> PlacementScope:
        """Whose placements the caller may see (403 for a commissioner asked for that is not theirs)."""
        return PlacementScope.of(caller_of(request), request.query_params.get("commissioner") or None)

    async def shown(self, request: Request, rows: Sequence[BaseModel | dict[str, Any]], *keys: str) -> None:
        plain = [r.model_dump() if isinstance(r, BaseModel) else r for r in rows]
        refs = audit.references(plain, *(keys or ("placement_id", "patient_ref")))
        await audit.record(self.pool, SERVICE, caller_of(request), request, refs)


def placement_routes(api: Api) -> list[BaseRoute]:
    model = api.model

    @answers_bad_requests
    async def list_placements(request: Request) -> Response:
        day = api.as_of(request)
        allowed = api.scope(request)
        found = await model.active(
            day,
            commissioner=allowed.commissioner,
            provider=allowed.provider,
            out_of_area=query_bool(request, "out_of_area"),
            cohort=query_enum(request, "cohort", Cohort),
            bed_type=query_enum(request, "bed_type", BedType),
        )
        rows = [PlacementView.of(p, day) for p in found]
        await api.shown(request, rows)
        return ok({"as_of": day, "count": len(rows), "placements": rows})

    @answers_bad_requests
    async def get_placement(request: Request) -> Response:
        day = api.as_of(request)
        pid = request.path_params["placement_id"]
        allowed = PlacementScope.of(caller_of(request))
        p = await model.placement(pid)
        if p is None:
            return JSONResponse({"error": f"no placement {pid}"}, status_code=404)
        if not allowed.allows(p.commissioner, p.provider, p.provider_site):
            raise Forbidden(f"placement {pid} is not one of {caller_of(request).org}'s")
        in_force = rates_in_force(p)
        body = PlacementDetailView.of(
            p,
            day,
            as_of=day,
            active=p.active_on(day),
            transfer_to_placement_id=p.ending.transfer_to_placement_id if p.ending else None,
            rates=[RateView.of(e, e in in_force) for e in sorted(p.rates, key=lambda e: e.order)],
            reviews=[
                ReviewDoneView.model_validate(r)
                for r in sorted(p.reviews, key=lambda r: (r.review_date, r.review_type.value))
            ],
            schedule=[ScheduleView.of(s) for s in p.schedules_as_of(day)],
            alerts=await model.alerts(pid),
            repatriations=await model.repatriations(placement_id=pid),
            parked_events=[ParkedView.of(e, pid) for e in await model.parked(pid)],
        )
        await api.shown(request, [body])
        return ok(body.model_dump())

    return [
        Route("/placements", list_placements),
        Route("/placements/{placement_id:path}", get_placement),
    ]


def review_routes(api: Api) -> list[BaseRoute]:
    model = api.model

    @answers_bad_requests
    async def overdue_reviews(request: Request) -> Response:
        day = api.as_of(request)
        allowed = api.scope(request)
        found = await model.active(day, commissioner=allowed.commissioner, provider=allowed.provider)
        rows = overdue(found, day)
        await api.shown(request, rows)
        return ok({"as_of": day, "count": len(rows), "reviews": rows})

    @answers_bad_requests
    async def upcoming_reviews(request: Request) -> Response:
        day = api.as_of(request)
        within = query_int(request, "within_days", 28)
        allowed = api.scope(request)
        found = await model.active(day, commissioner=allowed.commissioner, provider=allowed.provider)
        rows = upcoming(found, day, within)
        await api.shown(request, rows)
        return ok({"as_of": day, "within_days": within, "count": len(rows), "reviews": rows})

    return [
        Route("/reviews/overdue", overdue_reviews),
        Route("/reviews/upcoming", upcoming_reviews),
    ]


def repatriation_routes(api: Api) -> list[BaseRoute]:
    model = api.model

    @answers_bad_requests
    async def repatriations(request: Request) -> Response:
        start, end = query_date(request, "from"), query_date(request, "to") or query_date(request, "as_of")
        if start and end and end < start:
            raise BadRequest("to must not be before from")
        allowed = api.scope(request)
        rows = await model.repatriations(
            start=start, end=end, commissioner=allowed.commissioner, provider=allowed.provider
        )
        await api.shown(request, rows, "from_placement_id", "to_placement_id", "patient_ref")
        return ok({"from": start, "to": end, "count": len(rows), "repatriations": rows})

    @answers_bad_requests
    async def candidates(request: Request) -> Response:
        day = api.as_of(request)
        allowed = api.scope(request)
        found = await model.active(day, commissioner=allowed.commissioner, provider=allowed.provider, out_of_area=True)
        capacity = await model.capacity(day)
        rows = []
        for p in found:
            local = capacity.get((p.commissioner_area, p.bed_type.value))
            if local is not None and local.available_beds > 0:
                rows.append(
                    CandidateView.of(
                        p,
                        day,
                        local_area=local.area,
                        local_available_beds=local.available_beds,
                        local_capacity_as_of=local.as_of,
                    )
                )
        await api.shown(request, rows)
        return ok({"as_of": day, "count": len(rows), "candidates": rows})

    return [
        Route("/repatriations", repatriations),
        Route("/repatriation-candidates", candidates),
    ]


def summary_routes(api: Api) -> list[BaseRoute]:
    model = api.model

    @answers_bad_requests
    async def summary(request: Request) -> Response:
        # Counts, no references: ops see every organisation's (the status page); commissioner
        # staff and finance their own organisation's.
        caller = require(caller_of(request), OPS, FINANCE, *sorted(COMMISSIONER_STAFF))
        own = None if caller.is_ops else caller.org
        day = api.as_of(request)
        found = await model.active(day, commissioner=own)
        repatriated = await model.repatriation_counts(day)
        if own is not None:
            repatriated = {c: n for c, n in repatriated.items() if c == own}
        by: dict[str, dict[str, int]] = {}

        def bucket(code: str) -> dict[str, int]:
            return by.setdefault(code, dict.fromkeys(COUNTS, 0))

        for p in found:
            b = bucket(p.commissioner)
            b["active_out_of_area" if p.out_of_area else "active_in_area"] += 1
            b["inappropriate"] += int(p.inappropriate)
            b["overdue_reviews"] += sum(1 for a in p.alerts_as_of(day) if a.kind == "overdue")
            b["awaiting_agreement"] += int(p.agreed_by is None)
        for code, n in repatriated.items():
            bucket(code)["repatriations"] = n
        totals = {k: sum(b[k] for b in by.values()) for k in COUNTS}
        return ok(
            {
                "as_of": day,
                **totals,
                **({"parked_events": await model.parked_count()} if caller.is_ops else {}),
                "by_commissioner": dict(sorted(by.items())),
            }
        )

    return [Route("/summary", summary)]


def build_routes(pool: asyncpg.Pool, clock: Clock) -> list[BaseRoute]:  # type: ignore[type-arg]
    api = Api(pool, clock, ReadModel(pool))
    return [
        *placement_routes(api),
        *review_routes(api),
        *repatriation_routes(api),
        *summary_routes(api),
        *build_measures_routes(pool, clock),
    ]
