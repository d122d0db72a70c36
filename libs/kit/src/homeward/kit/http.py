"""The small read-only HTTP app every service serves: health, readiness, metrics,
the AsyncAPI document, and the service's own query routes.

Every route but ``/healthz``, ``/readyz`` and routes declared :class:`PublicRoute` (the
ingress's partner endpoints, which have their own API keys) asks for a staff bearer token
(homeward.kit.auth): without a valid one the answer is 401, before any route runs. Routes then
check the caller's role and organisation (403). Both answers are problem+json (RFC 9457).
``/metrics`` and ``/admin/*`` (run the jobs now; the parking lot) are for ops;
``/asyncapi.json`` for any signed-in caller."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import OPS, AuthProblem, Caller, TokenVerifier, Unauthorized, require
from .parking import STATUSES, listing
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
    verifier: TokenVerifier | None = None,
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

    async def metrics(request: Request) -> Response:
        require(caller_of(request), OPS)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def asyncapi_doc(request: Request) -> Response:
        caller_of(request)  # any signed-in caller: it describes the events, it holds none
        if asyncapi is None:
            return JSONResponse({"error": "no AsyncAPI document"}, status_code=404)
        return JSONResponse(asyncapi())

    async def run_jobs_now(request: Request) -> Response:
        require(caller_of(request), OPS)
        # Operators (and the main job after a replay) run the schedulers now instead of waiting
        # for the interval. Jobs are idempotent, so a run beside the scheduled one is harmless.
        if run_jobs is None:
            return JSONResponse({"error": "this service has no jobs"}, status_code=404)
        return JSONResponse({"ran": await run_jobs()})

    async def parked(request: Request) -> Response:
        require(caller_of(request), OPS)
        # The service's parking lot (homeward.kit.parking): what waits, for what, and how it ended.
        wanted = request.query_params.get("status", "parked")
        statuses = list(STATUSES) if wanted == "all" else wanted.split(",")
        if any(s not in STATUSES for s in statuses):
            return JSONResponse({"error": f"status is one of {', '.join(STATUSES)} or all"}, status_code=400)
        try:
            limit = max(1, min(10_000, int(request.query_params.get("limit", "1000"))))
        except ValueError:
            return JSONResponse({"error": "limit is a number"}, status_code=400)
        async with request.app.state.pool.acquire() as conn:
            rows, counts = await listing(
                conn, statuses=statuses, awaiting=request.query_params.get("awaiting"), limit=limit
            )
        return JSONResponse(
            {"service": service, "counts": counts, "entries": [p.to_json(with_event=False) for p in rows]}
        )

    app = Starlette(
        routes=[
            PublicRoute("/healthz", healthz),
            PublicRoute("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/asyncapi.json", asyncapi_doc),
            Route("/admin/run-jobs", run_jobs_now, methods=["POST"]),
            Route("/admin/parked", parked),
            *routes,
        ],
        exception_handlers={AuthProblem: _auth_problem},
    )
    app.add_middleware(Authenticate, verifier=verifier or TokenVerifier())
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    return app


# ---- sign-in ------------------------------------------------------------------------------
def loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only (services bind 127.0.0.1 unless told otherwise;
    any other address needs staff sign-in configured)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


PROBLEM_JSON = "application/problem+json"


class PublicRoute(Route):
    """A route served without a staff token: health and readiness, and the ingress's partner
    endpoints (which check their own API keys). Every other route asks for one."""


def problem(status: int, title: str, detail: str, instance: str | None = None) -> JSONResponse:
    """An RFC 9457 problem document: ``type`` (about:blank: the status says it all), ``title``,
    ``status``, ``detail`` and the ``instance`` (the path asked for)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance is not None:
        body["instance"] = instance
    headers = {"WWW-Authenticate": 'Bearer realm="homeward", error="invalid_token"'} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def auth_problem(exc: AuthProblem, path: str | None = None) -> JSONResponse:
    return problem(exc.status, exc.title, exc.detail, path)


async def _auth_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthProblem)
    return auth_problem(exc, request.url.path)


def caller_of(request: Request) -> Caller:
    """The signed-in caller (set by :class:`Authenticate`); Unauthorized if there is none, so a
    route mounted without the middleware refuses everything."""
    caller = request.scope.get("homeward.caller")
    if not isinstance(caller, Caller):
        raise Unauthorized("sign in: send Authorization: Bearer <token>")
    return caller


class Authenticate:
    """ASGI middleware: verifies the bearer token of every request to a route that is not a
    :class:`PublicRoute` and puts the caller in the scope; answers 401 problem+json otherwise.
    Unknown paths are answered 401 too (nothing is said about what exists to a stranger).

    ``cookie`` (for server-rendered pages a browser reads): without an Authorization header, a
    GET or HEAD may carry the token in that cookie instead. Nothing else is taken from a cookie,
    so a page cannot be made to change anything by another site's form (CSRF). The services'
    APIs take no cookie."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier, cookie: str | None = None) -> None:
        self.app = app
        self.verifier = verifier
        self.cookie = cookie

    def _authorization(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        given = headers.get("authorization")
        if given or self.cookie is None or scope.get("method") not in ("GET", "HEAD"):
            return given
        token = Request(scope).cookies.get(self.cookie)
        return f"Bearer {token}" if token else None

    def _public(self, scope: Scope) -> bool:
        router = scope.get("app")
        for route in getattr(router, "routes", ()):
            if isinstance(route, PublicRoute) and route.matches(scope)[0] is Match.FULL:
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._public(scope):
            await self.app(scope, receive, send)
            return
        try:
            caller = await self.verifier.verify_header(self._authorization(scope))
        except AuthProblem as exc:
            await auth_problem(exc, scope.get("path"))(scope, receive, send)
            return
        scope["homeward.caller"] = caller
        await self.app(scope, receive, send)


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
        except AuthProblem as exc:  # also when the route is mounted without build_app's handler
            return auth_problem(exc, request.url.path)

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
