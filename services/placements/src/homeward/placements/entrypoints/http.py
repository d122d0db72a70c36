"""The read API: JSON over HTTP, every query "as of" a date (``as_of=YYYY-MM-DD``, default today
by the service clock). Never returns an NHS number: people are identified by ``patient_ref``.

Staff only (docs/staff-access.md): commissioner staff see their organisation's placements,
provider staff those at their own sites (filtered in SQL), ops the parked events' reasons and
the overview counts; finance the counts of their organisation. Every answer that shows
placements appends a row to the audit trail naming them."""

from __future__ import annotations

import datetime as dt
from enum import Enum
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
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..adapters.read_model import ReadModel
from ..adapters.repository import ParkedEvent
from ..domain import Placement, RateEntry, ReviewSchedule, alert_for
from .measures import build_measures_routes

COUNTS = (
    "active_out_of_area",
    "active_in_area",
    "inappropriate",
    "overdue_reviews",
    "repatriations",
    "awaiting_agreement",
)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def ok(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(jsonable(body))


def placement_row(p: Placement, as_of: dt.date) -> dict[str, Any]:
    return {
        "placement_id": p.placement_id,
        "referral_id": p.referral_id,
        "patient_ref": p.patient_ref,
        "commissioner": p.commissioner,
        "commissioner_area": p.commissioner_area,
        "provider": p.provider,
        "provider_site": p.provider_site,
        "provider_site_area": p.provider_site_area,
        "independent_provider": p.independent_provider,
        "bed_type": p.bed_type,
        "setting": p.setting,
        "cohort": p.cohort,
        "age_band": p.age_band,
        "legal_status": p.legal_status,
        "programme": p.programme,
        "start_date": p.start_date,
        "planned_end_date": p.planned_end_date,
        "end_date": p.end_date,
        "end_reason": p.ending.end_reason if p.ending else None,
        "out_of_area": p.out_of_area,
        "out_of_area_reason": p.out_of_area_reason,
        "inappropriate": p.inappropriate,
        "distance_from_home_km": p.distance_from_home_km,
        "daily_rate_pence": p.rate_on(as_of),
        "funding": [{"commissioner": f.commissioner, "share_bp": f.share_bp} for f in p.funding],
        # docs/authority.md: "awaiting commissioner agreement", "starting rate held for confirmation" or "agreed"
        "status": p.status,
        "reported_by": p.reported_by,
        "agreed_by": p.agreed_by,
        "held_rates": sum(1 for e in p.rates if e.held),
    }


def review_row(p: Placement, schedule: ReviewSchedule) -> dict[str, Any]:
    return {
        "placement_id": p.placement_id,
        "patient_ref": p.patient_ref,
        "commissioner": p.commissioner,
        "provider": p.provider,
        "provider_site": p.provider_site,
        "bed_type": p.bed_type,
        "cohort": p.cohort,
        "out_of_area": p.out_of_area,
        "review_type": schedule.review_type,
        "due_date": schedule.due_date,
        "last_review_date": schedule.last_review_date,
    }


def parked_row(e: ParkedEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "placement_id": e.placement_id,
        "event_type": e.event_type,
        "event_time": e.event_time,
        "organisation": e.organisation,
        "reason": e.reason,
        "parked_at": e.parked_at,
        "status": e.status,
        "data": e.event.get("data"),
    }


def overdue(placements: list[Placement], as_of: dt.date) -> list[dict[str, Any]]:
    rows = []
    for p in placements:
        for schedule in p.schedules_as_of(as_of):
            alert = alert_for(schedule, today=as_of, end_date=p.end_date)
            if alert is not None and alert.kind == "overdue":
                rows.append({**review_row(p, schedule), "days_overdue": alert.days, "escalation_level": alert.level})
    return sorted(rows, key=lambda r: (-r["days_overdue"], r["placement_id"], r["review_type"].value))


def upcoming(placements: list[Placement], as_of: dt.date, within_days: int) -> list[dict[str, Any]]:
    horizon = as_of + dt.timedelta(days=within_days)
    rows = []
    for p in placements:
        for schedule in p.schedules_as_of(as_of):
            due = schedule.due_date
            if as_of <= due <= horizon and (p.end_date is None or due < p.end_date):
                rows.append({**review_row(p, schedule), "days_until_due": (due - as_of).days})
    return sorted(rows, key=lambda r: (r["due_date"], r["placement_id"], r["review_type"].value))


def rates_in_force(p: Placement) -> set[RateEntry]:
    """For each effective date, the statement that stands (the latest made)."""
    latest: dict[dt.date, RateEntry] = {}
    for e in p.rates:
        if e.held:
            continue
        if e.effective_date not in latest or e.order > latest[e.effective_date].order:
            latest[e.effective_date] = e
    return set(latest.values())


SERVICE = "placements"


def build_routes(pool: asyncpg.Pool, clock: Clock) -> list[BaseRoute]:  # type: ignore[type-arg]
    model = ReadModel(pool)

    def as_of(request: Request) -> dt.date:
        return query_date(request, "as_of") or clock.today()

    def scope(request: Request) -> PlacementScope:
        """Whose placements the caller may see (403 for a commissioner asked for that is not theirs)."""
        return PlacementScope.of(caller_of(request), request.query_params.get("commissioner") or None)

    async def shown(request: Request, rows: list[dict[str, Any]], *keys: str) -> None:
        refs = audit.references(rows, *(keys or ("placement_id", "patient_ref")))
        await audit.record(pool, SERVICE, caller_of(request), request, refs)

    @answers_bad_requests
    async def list_placements(request: Request) -> Response:
        day = as_of(request)
        allowed = scope(request)
        found = await model.active(
            day,
            commissioner=allowed.commissioner,
            provider=allowed.provider,
            out_of_area=query_bool(request, "out_of_area"),
            cohort=query_enum(request, "cohort", Cohort),
            bed_type=query_enum(request, "bed_type", BedType),
        )
        rows = [placement_row(p, day) for p in found]
        await shown(request, rows)
        return ok({"as_of": day, "count": len(rows), "placements": rows})

    @answers_bad_requests
    async def get_placement(request: Request) -> Response:
        day = as_of(request)
        pid = request.path_params["placement_id"]
        allowed = PlacementScope.of(caller_of(request))
        p = await model.placement(pid)
        if p is None:
            return JSONResponse({"error": f"no placement {pid}"}, status_code=404)
        if not allowed.allows(p.commissioner, p.provider, p.provider_site):
            raise Forbidden(f"placement {pid} is not one of {caller_of(request).org}'s")
        in_force = rates_in_force(p)
        body = placement_row(p, day)
        body.update(
            {
                "as_of": day,
                "active": p.active_on(day),
                "transfer_to_placement_id": p.ending.transfer_to_placement_id if p.ending else None,
                "rates": [
                    {
                        "effective_date": e.effective_date,
                        "daily_rate_pence": e.daily_rate_pence,
                        "reason": e.reason,
                        "stated_at": e.event_time,
                        "event_id": e.event_id,
                        "in_force": e in in_force,
                        "held": e.held,
                        "stated_by": e.asserted_by,
                        "confirmed_by": e.confirmed_by,
                    }
                    for e in sorted(p.rates, key=lambda e: e.order)
                ],
                "reviews": [
                    {
                        "review_type": r.review_type,
                        "review_date": r.review_date,
                        "outcome": r.outcome,
                        "next_review_due": r.next_review_due,
                    }
                    for r in sorted(p.reviews, key=lambda r: (r.review_date, r.review_type.value))
                ],
                "schedule": [
                    {
                        "review_type": s.review_type,
                        "interval_days": s.rule.interval_days,
                        "due_date": s.due_date,
                        "last_review_date": s.last_review_date,
                        "policy": s.rule.source,
                    }
                    for s in p.schedules_as_of(day)
                ],
                "alerts": await model.alerts(pid),
                "repatriations": await model.repatriations(placement_id=pid),
                "parked_events": [parked_row(e) for e in await model.parked(placement_id=pid)],
            }
        )
        await shown(request, [body])
        return ok(body)

    @answers_bad_requests
    async def overdue_reviews(request: Request) -> Response:
        day = as_of(request)
        allowed = scope(request)
        found = await model.active(day, commissioner=allowed.commissioner, provider=allowed.provider)
        rows = overdue(found, day)
        await shown(request, rows)
        return ok({"as_of": day, "count": len(rows), "reviews": rows})

    @answers_bad_requests
    async def upcoming_reviews(request: Request) -> Response:
        day = as_of(request)
        within = query_int(request, "within_days", 28)
        allowed = scope(request)
        found = await model.active(day, commissioner=allowed.commissioner, provider=allowed.provider)
        rows = upcoming(found, day, within)
        await shown(request, rows)
        return ok({"as_of": day, "within_days": within, "count": len(rows), "reviews": rows})

    @answers_bad_requests
    async def repatriations(request: Request) -> Response:
        start, end = query_date(request, "from"), query_date(request, "to") or query_date(request, "as_of")
        if start and end and end < start:
            raise BadRequest("to must not be before from")
        allowed = scope(request)
        rows = await model.repatriations(
            start=start, end=end, commissioner=allowed.commissioner, provider=allowed.provider
        )
        await shown(request, rows, "from_placement_id", "to_placement_id", "patient_ref")
        return ok({"from": start, "to": end, "count": len(rows), "repatriations": rows})

    @answers_bad_requests
    async def candidates(request: Request) -> Response:
        day = as_of(request)
        allowed = scope(request)
        found = await model.active(day, commissioner=allowed.commissioner, provider=allowed.provider, out_of_area=True)
        capacity = await model.capacity(day)
        rows = []
        for p in found:
            local = capacity.get((p.commissioner_area, p.bed_type.value))
            if local is not None and local.available_beds > 0:
                rows.append(
                    {
                        **placement_row(p, day),
                        "local_area": local.area,
                        "local_available_beds": local.available_beds,
                        "local_capacity_as_of": local.as_of,
                    }
                )
        await shown(request, rows)
        return ok({"as_of": day, "count": len(rows), "candidates": rows})

    @answers_bad_requests
    async def parked(request: Request) -> Response:
        # Ops: why events wait or were given up on; not what they said about a person.
        require(caller_of(request), OPS)
        expired = bool(query_bool(request, "expired"))
        rows = [{k: v for k, v in parked_row(e).items() if k != "data"} for e in await model.parked(expired=expired)]
        return ok({"status": "expired" if expired else "parked", "count": len(rows), "parked": rows})

    @answers_bad_requests
    async def summary(request: Request) -> Response:
        # Counts, no references: ops see every organisation's (the status page); commissioner
        # staff and finance their own organisation's.
        caller = require(caller_of(request), OPS, FINANCE, *sorted(COMMISSIONER_STAFF))
        own = None if caller.is_ops else caller.org
        day = as_of(request)
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

    return [
        Route("/placements", list_placements),
        Route("/placements/{placement_id:path}", get_placement),
        Route("/reviews/overdue", overdue_reviews),
        Route("/reviews/upcoming", upcoming_reviews),
        Route("/repatriations", repatriations),
        Route("/repatriation-candidates", candidates),
        Route("/parked", parked),
        Route("/summary", summary),
        *build_measures_routes(pool, clock),
    ]
