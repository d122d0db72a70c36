"""The read API: positions, spend by provider, a placement's ledger, invoices and the invariant
check. Every query takes ``as_of=YYYY-MM-DD`` (default: today by the service clock); positions
and spend sum the ledger entries effective on or before that date."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from homeward.kit.clock import Clock
from homeward.kit.http import BadRequest, answers_bad_requests, query_date
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


def build_routes(pool: asyncpg.Pool, clock: Clock) -> list[BaseRoute]:  # type: ignore[type-arg]
    async def positions(request: Request) -> Response:
        as_of = _as_of(request, clock)
        fy = _fy(request, as_of)
        async with pool.acquire() as conn:
            balances = await q.balances_as_of(conn, as_of)
            names = await q.commissioners(conn, fy)
        body = [{**position(balances, c, fy).to_json(), "as_of": as_of.isoformat()} for c in names]
        return JSONResponse({"financial_year": fy, "as_of": as_of.isoformat(), "positions": body})

    async def commissioner_position(request: Request) -> Response:
        commissioner = request.path_params["commissioner"]
        as_of = _as_of(request, clock)
        fy = _fy(request, as_of)
        async with pool.acquire() as conn:
            if commissioner not in await q.commissioners(conn):
                return JSONResponse({"error": f"no ledger accounts for {commissioner}"}, status_code=404)
            balances = await q.balances_as_of(conn, as_of, commissioner)
        return JSONResponse({**position(balances, commissioner, fy).to_json(), "as_of": as_of.isoformat()})

    async def provider_spend(request: Request) -> Response:
        commissioner = request.path_params["commissioner"]
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

    async def placement_ledger(request: Request) -> Response:
        as_of = query_date(request)
        async with pool.acquire() as conn:
            body = await q.placement_history(conn, request.path_params["placement_id"], as_of)
        if body is None:
            return JSONResponse({"error": "no ledger entries for this placement"}, status_code=404)
        return JSONResponse(body)

    async def invoices(request: Request) -> Response:
        flagged_raw = request.query_params.get("flagged")
        flagged: Any = None if flagged_raw is None else flagged_raw.lower() in ("1", "true", "yes")
        async with pool.acquire() as conn:
            rows = await q.invoices(conn, request.path_params["commissioner"], flagged)
        return JSONResponse({"commissioner": request.path_params["commissioner"], "invoices": rows})

    async def check(_: Request) -> Response:
        async with pool.acquire() as conn:
            report = await q.check(conn)
        return JSONResponse(report.to_json(), status_code=200 if report.ok else 500)

    return [
        Route("/positions", answers_bad_requests(positions)),
        Route("/positions/{commissioner}", answers_bad_requests(commissioner_position)),
        Route("/providers/{commissioner}/spend", answers_bad_requests(provider_spend)),
        Route("/placements/{placement_id}/ledger", answers_bad_requests(placement_ledger)),
        Route("/invoices/{commissioner}", answers_bad_requests(invoices)),
        Route("/check", answers_bad_requests(check)),
    ]
