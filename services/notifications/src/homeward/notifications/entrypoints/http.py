"""The read API: the sent-mail log, failed notifications, subscriptions and a summary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from homeward.kit.clock import Clock
from homeward.kit.http import query_date
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..adapters import queries
from ..domain.recipients import InvalidInput, parse_event_type

STATUSES = ("pending", "sent", "failed")


class BadRequest(ValueError):
    pass


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def _date(request: Request, name: str) -> dt.date | None:
    try:
        return query_date(request, name)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


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
        date_from=_date(request, "from"),
        date_to=_date(request, "to"),
        as_of=_date(request, "as_of"),
        limit=_int(request, "limit", 200, 1, 1000),
        offset=_int(request, "offset", 0, 0, 10**9),
    )


Endpoint = Callable[[Request, asyncpg.Connection], Awaitable[Any]]  # type: ignore[type-arg]


def routes(pool: asyncpg.Pool, clock: Clock) -> Sequence[BaseRoute]:  # type: ignore[type-arg]
    def endpoint(fn: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                async with pool.acquire() as conn:
                    return JSONResponse(await fn(request, conn))
            except BadRequest as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return handle

    async def log(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        f = _log_filter(request)
        return {"notifications": await queries.notification_log(conn, f), "limit": f.limit, "offset": f.offset}

    async def failed(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        f = _log_filter(request, status="failed")
        return {"notifications": await queries.notification_log(conn, f), "limit": f.limit, "offset": f.offset}

    async def subscriptions(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        org, role = request.query_params.get("org"), request.query_params.get("role")
        return {
            "recipients": await queries.subscriptions(
                conn,
                organisation=org.upper() if org else None,
                role=role,
                event_type=_event_type(request),
                as_of=_date(request, "as_of"),
            )
        }

    async def summary(request: Request, conn: asyncpg.Connection) -> Any:  # type: ignore[type-arg]
        return await queries.summary(conn, _date(request, "as_of"))

    return [
        Route("/notifications", endpoint(log)),
        Route("/notifications/failed", endpoint(failed)),
        Route("/subscriptions", endpoint(subscriptions)),
        Route("/summary", endpoint(summary)),
    ]
