"""Sign-in on every service's HTTP app: open health, 401 and 403 as problem+json, ops-only
metrics and admin jobs, public routes (the ingress's partner endpoints) left to their own keys,
and the audit trail append-only (real PostgreSQL)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from homeward.kit import audit
from homeward.kit.auth import Caller, require
from homeward.kit.db import migrate
from homeward.kit.http import PublicRoute, build_app, caller_of
from homeward.testing import ops_headers, staff_headers, staff_signer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def _whoami(request: Request) -> Response:
    caller = require(caller_of(request), "case-manager", "provider")
    return JSONResponse(caller.to_json())


async def _partner(request: Request) -> Response:
    return JSONResponse({"key": request.headers.get("authorization")}, status_code=202)


def _client() -> httpx.AsyncClient:
    runs: list[int] = []

    async def run_jobs() -> dict[str, int]:
        runs.append(1)
        return {"n": len(runs)}

    app = build_app(
        "svc",
        checks={},
        routes=[Route("/whoami", _whoami), PublicRoute("/events", _partner, methods=["POST"])],
        run_jobs=run_jobs,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


def _is_problem(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert body["status"] == status and body["type"] == "about:blank" and body["detail"]
    return body


async def test_health_is_open_and_everything_else_asks_for_a_token() -> None:
    async with _client() as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        for method, path in (
            ("GET", "/whoami"),
            ("GET", "/metrics"),
            ("GET", "/asyncapi.json"),
            ("POST", "/admin/run-jobs"),
            ("GET", "/nowhere"),
        ):
            r = await client.request(method, path)
            body = _is_problem(r, 401)
            assert body["instance"] == path and body["title"] == "Unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "claims",
    [
        {"ttl": __import__("datetime").timedelta(seconds=-300)},
        {"aud": "not-homeward"},
        {"iss": "https://elsewhere.example"},
    ],
)
async def test_expired_or_foreign_tokens_are_401(claims: dict[str, object]) -> None:
    async with _client() as client:
        assert (await client.get("/whoami", headers=staff_headers("05A", "case-manager"))).status_code == 200
        _is_problem(await client.get("/whoami", headers=staff_headers("05A", "case-manager", **claims)), 401)


async def test_unsigned_and_strangers_tokens_are_401() -> None:
    import base64
    import json

    import jwt
    from homeward.kit.auth import LocalSigner

    good = staff_headers("05A", "case-manager")["Authorization"].split()[1]
    claims = jwt.decode(good, options={"verify_signature": False})

    def b64(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    stranger = LocalSigner.generate().token(org="05A", role="case-manager")
    async with _client() as client:
        for token in (unsigned, stranger, "not-a-jwt", good + "x"):
            _is_problem(await client.get("/whoami", headers={"Authorization": f"Bearer {token}"}), 401)
        _is_problem(await client.get("/whoami", headers={"Authorization": f"Basic {good}"}), 401)


async def test_roles_outside_the_route_are_403_and_metrics_and_admin_are_for_ops() -> None:
    async with _client() as client:
        me = await client.get("/whoami", headers=staff_headers("05A", "case-manager", sub="alice"))
        assert me.json() == {"sub": "alice", "org": "05A", "role": "case-manager", "name": None}
        body = _is_problem(await client.get("/whoami", headers=staff_headers("05A", "finance")), 403)
        assert body["title"] == "Forbidden"
        for role in ("case-manager", "finance", "provider", "commissioner"):
            _is_problem(await client.get("/metrics", headers=staff_headers("05A", role)), 403)
            _is_problem(await client.post("/admin/run-jobs", headers=staff_headers("05A", role)), 403)
        assert (await client.get("/metrics", headers=ops_headers())).status_code == 200
        assert (await client.post("/admin/run-jobs", headers=ops_headers())).json() == {"ran": {"n": 1}}
        # the asyncapi document: any signed-in caller (404 here: this app has none)
        assert (await client.get("/asyncapi.json", headers=staff_headers("RX1", "provider"))).status_code == 404


async def test_public_routes_keep_their_own_authorisation() -> None:
    async with _client() as client:
        r = await client.post("/events", headers={"Authorization": "Bearer partner-api-key"})
        assert r.status_code == 202 and r.json() == {"key": "Bearer partner-api-key"}
        _is_problem(await client.get("/events"), 401)  # only the declared method is public


async def test_a_route_without_the_middleware_refuses_everyone() -> None:
    app = Starlette(routes=[Route("/whoami", _whoami)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client:
        with pytest.raises(Exception):  # noqa: B017 - no handler: the request fails, nothing is shown
            await client.get("/whoami", headers=staff_headers("05A", "case-manager"))


async def test_the_audit_trail_is_written_and_append_only(database: str) -> None:
    await migrate(database, "svc", None)
    conn = await asyncpg.connect(database)
    try:
        request = Request(
            {
                "type": "http",
                "method": "GET",
                "path": "/placements",
                "query_string": b"as_of=2026-03-01",
                "headers": [],
                "server": ("svc", 80),
                "scheme": "http",
            }
        )
        await audit.record(
            conn, "placements", Caller("alice", "05A", "case-manager", "Alice"), request, ["P1", "P2", "P1"]
        )
        (row,) = await audit.read(conn)
        assert (row.service, row.sub, row.organisation, row.role, row.name) == (
            "placements",
            "alice",
            "05A",
            "case-manager",
            "Alice",
        )
        assert (row.action, row.query, row.refs) == ("GET /placements", "as_of=2026-03-01", ("P1", "P2"))
        assert await audit.read(conn, organisation="05R") == []
        for sql in ("UPDATE audit_log SET sub = 'mallory'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(asyncpg.PostgresError, match=r"append-only|permission denied"):
                await conn.execute(sql)
        assert [r.sub for r in await audit.read(conn)] == ["alice"]
    finally:
        await conn.close()


def test_the_session_signs_with_the_key_services_trust() -> None:
    import os

    from homeward.kit.auth import TokenVerifier

    assert os.environ["HOMEWARD_AUTH_JWKS"]
    assert TokenVerifier().verify(staff_signer().token(org="05A", role="ops")).is_ops


def test_only_loopback_counts_as_this_machine() -> None:
    from homeward.kit.http import loopback

    assert loopback("127.0.0.1") and loopback("localhost") and loopback("::1") and loopback("127.0.0.53")
    assert not loopback("0.0.0.0") and not loopback("::") and not loopback("10.0.0.4") and not loopback("svc.local")


async def test_a_service_serving_beyond_loopback_without_sign_in_configured_refuses_to_start(
    tmp_path: object,
) -> None:
    from homeward.kit.auth import AuthSettings
    from homeward.kit.service import ServiceDefinition, ServiceRuntime, StartupError
    from homeward.kit.settings import ServiceSettings

    def runtime(host: str, auth: AuthSettings) -> ServiceRuntime:
        settings = ServiceSettings(database_url="", http_host=host, auth=auth)
        return ServiceRuntime(ServiceDefinition(name="budget", settings=settings, migrations=None, handlers={}))

    unset = AuthSettings(issuer="", jwks="")
    with pytest.raises(StartupError, match=r"HTTP_HOST=0\.0\.0\.0 serves beyond this machine"):
        runtime("0.0.0.0", unset)._check_settings()
    # With sign-in configured (or on loopback) the same check goes on to the next setting.
    for host, auth in (("0.0.0.0", AuthSettings()), ("127.0.0.1", unset)):
        with pytest.raises(StartupError, match="DATABASE_URL"):
            runtime(host, auth)._check_settings()


async def test_pages_may_take_the_token_from_a_cookie_for_reading_only() -> None:
    from homeward.kit.auth import TokenVerifier
    from homeward.kit.http import Authenticate

    async def change(request: Request) -> Response:
        return JSONResponse(caller_of(request).to_json())

    app = Starlette(routes=[Route("/whoami", _whoami), Route("/change", change, methods=["POST"])])
    app.add_middleware(Authenticate, verifier=TokenVerifier(), cookie="homeward_token")
    token = staff_headers("05A", "case-manager")["Authorization"].split()[1]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://pages", cookies={"homeward_token": token}
    ) as client:
        assert (await client.get("/whoami")).json()["org"] == "05A"
        assert (await client.post("/change")).status_code == 401  # a cookie alone never changes anything
        assert (await client.post("/change", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app("svc", {}, routes=[Route("/whoami", _whoami)])),
        base_url="http://svc",
        cookies={"homeward_token": token},
    ) as client:
        assert (await client.get("/whoami")).status_code == 401  # the services' APIs take no cookie
