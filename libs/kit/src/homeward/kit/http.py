"""The small read-only HTTP app every service serves: health, readiness, metrics,
the AsyncAPI document, and the service's own query routes."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .progress import Stall

ReadinessCheck = Callable[[], Awaitable[bool]]


def build_app(
    service: str,
    checks: dict[str, ReadinessCheck],
    asyncapi: Callable[[], dict[str, Any]] | None = None,
    routes: Sequence[BaseRoute] = (),
    state: dict[str, Any] | None = None,
    run_jobs: Callable[[], Awaitable[dict[str, int]]] | None = None,
    stalled: Callable[[], Sequence[Stall]] | None = None,
) -> Starlette:
    """``checks`` say whether a dependency answers; ``stalled`` what makes no progress
    (homeward.kit.progress). Either makes ``/readyz`` answer 503; ``/healthz`` (liveness) only
    says the process serves: no outage or stall is cured by restarting it."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def readyz(_: Request) -> Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await asyncio.wait_for(check(), timeout=5))
            except Exception:
                results[name] = False
        stuck = [s.to_json() for s in stalled()] if stalled is not None else []
        ready = all(results.values()) and not stuck
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": service, "checks": results, "stalled": stuck},
            status_code=200 if ready else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def asyncapi_doc(_: Request) -> Response:
        if asyncapi is None:
            return JSONResponse({"error": "no AsyncAPI document"}, status_code=404)
        return JSONResponse(asyncapi())

    async def run_jobs_now(_: Request) -> Response:
        # Operators (and the main job after a replay) run the schedulers now instead of waiting
        # for the interval. Jobs are idempotent, so a run beside the scheduled one is harmless.
        if run_jobs is None:
            return JSONResponse({"error": "this service has no jobs"}, status_code=404)
        return JSONResponse({"ran": await run_jobs()})

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/asyncapi.json", asyncapi_doc),
            Route("/admin/run-jobs", run_jobs_now, methods=["POST"]),
            *routes,
        ]
    )
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    return app


# ---- the services' query routes -------------------------------------------------------
Endpoint = Callable[[Request], Awaitable[Response]]
E = TypeVar("E", bound=Enum)


class BadRequest(ValueError):
    """A query the caller must fix; :func:`answers_bad_requests` turns it into a 400
    ``{"error": message}``. The message names the parameter and what it must be."""


def answers_bad_requests(endpoint: Endpoint) -> Endpoint:
    """Wrap a route's endpoint so that :class:`BadRequest` answers 400 instead of 500."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return guarded


def _raw(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return None if raw is None or raw.strip() == "" else raw.strip()


def query_date(request: Request, name: str = "as_of") -> dt.date | None:
    """An optional ISO date parameter."""
    raw = _raw(request, name)
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2026-03-31") from None


def query_int(request: Request, name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
    """An optional whole number within [low, high]."""
    raw = _raw(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        raise BadRequest(
            f"{name} must be between {low} and {high}" if high is not None else f"{name} must be {low} or more"
        )
    return value


def query_bool(request: Request, name: str) -> bool | None:
    """An optional true/false (also 1/0, yes/no)."""
    raw = _raw(request, name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false")


def query_enum(request: Request, name: str, kind: type[E]) -> E | None:
    """An optional member of a vocabulary, by its value."""
    raw = _raw(request, name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise BadRequest(f"{name} must be one of {', '.join(str(m.value) for m in kind)}") from None
