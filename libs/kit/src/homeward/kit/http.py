"""The small read-only HTTP app every service serves: health, readiness, metrics,
the AsyncAPI document, and the service's own query routes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

ReadinessCheck = Callable[[], Awaitable[bool]]


def build_app(
    service: str,
    checks: dict[str, ReadinessCheck],
    asyncapi: Callable[[], dict[str, Any]] | None = None,
    routes: Sequence[BaseRoute] = (),
    state: dict[str, Any] | None = None,
    run_jobs: Callable[[], Awaitable[dict[str, int]]] | None = None,
) -> Starlette:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": service})

    async def readyz(_: Request) -> Response:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await asyncio.wait_for(check(), timeout=5))
            except Exception:
                results[name] = False
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": service, "checks": results},
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


def query_date(request: Request, name: str = "as_of") -> Any:
    """Parse an optional ISO date query parameter; raises ValueError with a clear message."""
    import datetime as dt

    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a date like 2026-03-31") from exc
