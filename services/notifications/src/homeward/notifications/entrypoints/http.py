"""The read API: the sent-mail log, failed notifications, subscriptions and a summary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from homeward.kit.clock import Clock
from homeward.kit.http import BadRequest, answers_bad_requests, query_date, query_int
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
    org = request.query_params.get("org")
    return queries.LogFilter(
        organisation=org.upper() if org else None,
        event_type=_event_type(request),
        status=status,
        date_from=query_date(request, "from"),
        date_to=query_date(request, "to"),
        as_of=query_date(request, "as_of"),
        limit=query_int(request, "limit", 200, low=1, high=1000),
        offset=query_int(request, "offset", 0, low=0, high=10**9),
    )


Endpoint = Callable[[Request, asyncpg.Connection], Awaitable[Any]]  # type: ignore[type-arg]


def routes(pool: asyncpg.Pool, clock: Clock) -> Sequence[BaseRoute]:  # type: ignore[type-arg]
    def endpoint(fn: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @answers_bad_requests
        async def handle(request: Request) -> Response:
            async with pool.acquire() as conn:
                return JSONResponse(await fn(request, conn))

        return handle

    async def log(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        f = _log_filter(request)
        return {"notifications": await queries.notification_log(conn, f), "limit": f.limit, "offset": f.offset}

    async def failed(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        f = _log_filter(request, status="failed")
        return {"notifications": await queries.notification_log(conn, f), "limit": f.limit, "offset": f.offset}

    async def suppressed(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        f = _log_filter(request, status="suppressed")
        return {"notifications": await queries.notification_log(conn, f), "limit": f.limit, "offset": f.offset}

    async def subscriptions(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        org, role = request.query_params.get("org"), request.query_params.get("role")
        return {
            "recipients": await queries.subscriptions(
                conn,
                organisation=org.upper() if org else None,
                role=role,
                event_type=_event_type(request),
                as_of=query_date(request, "as_of"),
            )
        }

    async def summary(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        return await queries.summary(conn, query_date(request, "as_of"))

    return [
        Route("/notifications", endpoint(log)),
        Route("/notifications/failed", endpoint(failed)),
        Route("/notifications/suppressed", endpoint(suppressed)),
        Route("/subscriptions", endpoint(subscriptions)),
        Route("/summary", endpoint(summary)),
    ]
