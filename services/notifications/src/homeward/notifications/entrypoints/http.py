"""The read API: the sent-mail log, failed notifications, subscriptions and a summary.

Staff only (docs/staff-access.md): commissioner and provider staff see their own organisation's
emails and recipients (filtered in SQL); ops the summary counts. Reading the log or the
recipients is written to the audit trail (the emails name placements; recipients are people)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from homeward.kit import audit
from homeward.kit.auth import OPS, PATIENT_LEVEL, own_organisation, require
from homeward.kit.clock import Clock
from homeward.kit.http import BadRequest, answers_bad_requests, caller_of, query_date, query_int
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..adapters import queries
from ..domain.recipients import InvalidInput, parse_event_type

STATUSES = ("pending", "sent", "failed", "suppressed")


def _event_type(request: Request) -> str | None:
    raw = request.query_params.get("event_type")
    if raw is None:
        return None
    try:
        return parse_event_type(raw)
    except InvalidInput as exc:
        raise BadRequest(str(exc)) from None


def _log_filter(request: Request, status: str | None = None) -> queries.LogFilter:
    status = status or request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}")
    return queries.LogFilter(
        organisation=_own(request),
        event_type=_event_type(request),
        status=status,
        date_from=query_date(request, "from"),
        date_to=query_date(request, "to"),
        as_of=query_date(request, "as_of"),
        limit=query_int(request, "limit", 200, low=1, high=1000),
        offset=query_int(request, "offset", 0, low=0, high=10**9),
    )


def _own(request: Request) -> str:
    """The caller's organisation; 403 if ``org`` names another."""
    return own_organisation(
        require(caller_of(request), *sorted(PATIENT_LEVEL)), request.query_params.get("org"), "organisation"
    )


Endpoint = Callable[[Request, asyncpg.Connection], Awaitable[Any]]  # type: ignore[type-arg]
Endpoints = Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]


def _dump(views: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [v.model_dump(mode="json") for v in views]


def _log_routes(endpoint: Endpoints) -> list[BaseRoute]:
    """The sent-mail log, and its failed and suppressed views."""

    def log(status: str | None = None) -> Endpoint:
        async def read(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
            f = _log_filter(request, status)
            rows = _dump(await queries.notification_log(conn, f))
            await audit.record(conn, "notifications", caller_of(request), request, audit.references(rows, "reference"))
            return {"notifications": rows, "limit": f.limit, "offset": f.offset}

        return read

    return [
        Route("/notifications", endpoint(log())),
        Route("/notifications/failed", endpoint(log("failed"))),
        Route("/notifications/suppressed", endpoint(log("suppressed"))),
    ]


def _subscription_routes(endpoint: Endpoints) -> list[BaseRoute]:
    async def subscriptions(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        recipients = await queries.subscriptions(
            conn,
            organisation=_own(request),
            role=request.query_params.get("role"),
            event_type=_event_type(request),
            as_of=query_date(request, "as_of"),
        )
        await audit.record(conn, "notifications", caller_of(request), request)
        return {"recipients": _dump(recipients)}

    return [Route("/subscriptions", endpoint(subscriptions))]


def _summary_routes(endpoint: Endpoints) -> list[BaseRoute]:
    async def summary(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        require(caller_of(request), OPS)  # every organisation's counts: the status page
        return await queries.summary(conn, query_date(request, "as_of"))

    return [Route("/summary", endpoint(summary))]


def routes(pool: asyncpg.Pool, clock: Clock) -> Sequence[BaseRoute]:  # type: ignore[type-arg]
    def endpoint(fn: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @answers_bad_requests
        async def handle(request: Request) -> Response:
            async with pool.acquire() as conn:
                return JSONResponse(await fn(request, conn))

        return handle

    return [*_log_routes(endpoint), *_subscription_routes(endpoint), *_summary_routes(endpoint)]
