"""The read API: positions, spend by provider, a placement's ledger, invoices and the invariant
check. Every query takes ``as_of=YYYY-MM-DD`` (default: today by the service clock); positions
and spend sum the ledger entries effective on or before that date.

Staff only (docs/staff-access.md): commissioner staff and finance read their own organisation's
ledger; ops the positions of every organisation (the status page's overview) and the invariant
check. A placement's ledger is placement-level: it is audited, and finance see it without
patient references. Provider staff have no budget views."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeAlias

import asyncpg
from homeward.kit import audit
from homeward.kit.auth import COMMISSIONER_STAFF, FINANCE, OPS, Forbidden, own_organisation, require
from homeward.kit.clock import Clock
from homeward.kit.http import BadRequest, answers_bad_requests, caller_of, query_date
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..adapters import postgres as q
from ..domain.calendar import fy_label, fy_of, parse_fy
from ..domain.position import position, spend_by_provider


def _as_of(request: Request, clock: Clock) -> dt.date:
    return query_date(request) or clock.today()


def _fy(request: Request, as_of: dt.date) -> str:
    label = request.query_params.get("financial_year")
    if not label:
        return fy_label(fy_of(as_of))
    try:
        return fy_label(parse_fy(label))
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


SERVICE = "budget"
LEDGER_READERS = (FINANCE, *sorted(COMMISSIONER_STAFF))


def without_patient_refs(value: Any) -> Any:
    """``value`` with every ``patient_ref`` left out (what finance see of a placement's ledger)."""
    if isinstance(value, dict):
        return {k: without_patient_refs(v) for k, v in value.items() if k != "patient_ref"}
    if isinstance(value, list):
        return [without_patient_refs(v) for v in value]
    return value


def _organisations(history: dict[str, Any]) -> set[str]:
    """Every commissioner a placement's ledger concerns: its streams' and funders', its invoices'."""
    found = set()
    for s in history.get("streams", []):
        found.add(s["commissioner"])
        found.update(f["commissioner"] for f in s.get("funding", []))
    found.update(i["commissioner"] for i in history.get("invoices", []))
    return found


Pool: TypeAlias = asyncpg.Pool  # type: ignore[type-arg]


def build_routes(pool: Pool, clock: Clock) -> list[BaseRoute]:
    """The read API, one small builder per resource."""
    return [
        *_position_routes(pool, clock),
        *_spend_routes(pool, clock),
        *_placement_routes(pool),
        *_invoice_routes(pool),
        *_check_routes(pool),
    ]


def _position_routes(pool: Pool, clock: Clock) -> list[BaseRoute]:
    async def positions(request: Request) -> Response:
        caller = require(caller_of(request), OPS, *LEDGER_READERS)
        as_of = _as_of(request, clock)
        fy = _fy(request, as_of)
        async with pool.acquire() as conn:
            balances = await q.balances_as_of(conn, as_of, None if caller.is_ops else caller.org)
            names = await q.commissioners(conn, fy)
        if not caller.is_ops:
            names = [c for c in names if c == caller.org]
        body = [{**position(balances, c, fy).to_json(), "as_of": as_of.isoformat()} for c in names]
        return JSONResponse({"financial_year": fy, "as_of": as_of.isoformat(), "positions": body})

    async def commissioner_position(request: Request) -> Response:
        caller = require(caller_of(request), OPS, *LEDGER_READERS)
        commissioner = request.path_params["commissioner"]
        if not caller.is_ops:
            own_organisation(caller, commissioner)
        as_of = _as_of(request, clock)
        fy = _fy(request, as_of)
        async with pool.acquire() as conn:
            if commissioner not in await q.commissioners(conn):
                return JSONResponse({"error": f"no ledger accounts for {commissioner}"}, status_code=404)
            balances = await q.balances_as_of(conn, as_of, commissioner)
        return JSONResponse({**position(balances, commissioner, fy).to_json(), "as_of": as_of.isoformat()})

    return [
        Route("/positions", answers_bad_requests(positions)),
        Route("/positions/{commissioner}", answers_bad_requests(commissioner_position)),
    ]


def _spend_routes(pool: Pool, clock: Clock) -> list[BaseRoute]:
    async def provider_spend(request: Request) -> Response:
        commissioner = own_organisation(
            require(caller_of(request), *LEDGER_READERS), request.path_params["commissioner"]
        )
        as_of = _as_of(request, clock)
        fy = _fy(request, as_of)
        async with pool.acquire() as conn:
            balances = await q.balances_as_of(conn, as_of, commissioner)
        return JSONResponse(
            {
                "commissioner": commissioner,
                "financial_year": fy,
                "as_of": as_of.isoformat(),
                "providers": spend_by_provider(balances, commissioner, fy),
            }
        )

    return [Route("/providers/{commissioner}/spend", answers_bad_requests(provider_spend))]


def _placement_routes(pool: Pool) -> list[BaseRoute]:
    async def placement_ledger(request: Request) -> Response:
        caller = require(caller_of(request), *LEDGER_READERS)
        as_of = query_date(request)
        pid = request.path_params["placement_id"]
        async with pool.acquire() as conn:
            body = await q.placement_history(conn, pid, as_of)
        if body is None:
            return JSONResponse({"error": "no ledger entries for this placement"}, status_code=404)
        if caller.org not in _organisations(body):
            raise Forbidden(f"placement {pid} is not one of {caller.org}'s")
        if caller.role == FINANCE:
            body = without_patient_refs(body)
        await audit.record(pool, SERVICE, caller, request, [pid])
        return JSONResponse(body)

    return [Route("/placements/{placement_id}/ledger", answers_bad_requests(placement_ledger))]


def _invoice_routes(pool: Pool) -> list[BaseRoute]:
    async def invoices(request: Request) -> Response:
        flagged_raw = request.query_params.get("flagged")
        flagged: Any = None if flagged_raw is None else flagged_raw.lower() in ("1", "true", "yes")
        caller = require(caller_of(request), *LEDGER_READERS)
        commissioner = own_organisation(caller, request.path_params["commissioner"])
        async with pool.acquire() as conn:
            rows = await q.invoices(conn, commissioner, flagged)
        await audit.record(pool, SERVICE, caller, request, audit.references(rows, "placement_id"))
        return JSONResponse({"commissioner": commissioner, "invoices": rows})

    return [Route("/invoices/{commissioner}", answers_bad_requests(invoices))]


def _check_routes(pool: Pool) -> list[BaseRoute]:
    async def check(request: Request) -> Response:
        require(caller_of(request), OPS, FINANCE)
        async with pool.acquire() as conn:
            report = await q.check(conn)
        return JSONResponse(report.to_json(), status_code=200 if report.ok else 500)

    return [Route("/check", answers_bad_requests(check))]
