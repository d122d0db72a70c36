import httpx
from homeward.kit.db import create_pool, migrate
from homeward.kit.http import build_app
from homeward.kit.metrics import EVENTS_HANDLED
from homeward.testing import ops_headers


async def test_health_readiness_and_metrics(database: str) -> None:
    await migrate(database, "svc", None)
    pool = await create_pool(database)
    kafka_up = {"value": True}

    async def pg() -> bool:
        async with pool.acquire() as conn:
            return await conn.fetchval("SELECT 1") == 1

    async def kafka() -> bool:
        return kafka_up["value"]

    runs: list[int] = []

    async def run_jobs() -> dict[str, int]:
        runs.append(1)
        return {"reviews": 3}

    app = build_app("svc", {"postgres": pg, "kafka": kafka}, asyncapi=lambda: {"asyncapi": "3.0.0"}, run_jobs=run_jobs)
    EVENTS_HANDLED.labels("svc", "homeward.X.v1", "handled").inc()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=ops_headers()
        ) as client:
            assert (await client.get("/healthz")).json()["status"] == "ok"
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": True, "kafka": True}
            kafka_up["value"] = False
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503 and not_ready.json()["checks"]["kafka"] is False
            metrics = (await client.get("/metrics")).text
            assert 'homeward_events_handled_total{outcome="handled",service="svc",type="homeward.X.v1"}' in metrics
            assert (await client.get("/asyncapi.json")).json()["asyncapi"] == "3.0.0"
            assert (await client.post("/admin/run-jobs")).json() == {"ran": {"reviews": 3}}
            assert runs == [1]
    finally:
        await pool.close()


async def test_query_helpers_answer_400_naming_the_parameter() -> None:
    import datetime as dt
    from enum import Enum

    from homeward.kit.http import BadRequest, answers_bad_requests, query_bool, query_date, query_enum, query_int
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    class Colour(Enum):
        RED = "red"
        BLUE = "blue"

    @answers_bad_requests
    async def endpoint(request: Request) -> Response:
        if request.query_params.get("refuse"):
            raise BadRequest("refuse says no")
        day = query_date(request)
        return JSONResponse(
            {
                "as_of": day.isoformat() if isinstance(day, dt.date) else None,
                "limit": query_int(request, "limit", 50, low=1, high=100),
                "open": query_bool(request, "open"),
                "colour": (c.value if (c := query_enum(request, "colour", Colour)) else None),
            }
        )

    app = Starlette(routes=[Route("/q", endpoint)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        good = await client.get("/q", params={"as_of": "2026-03-31", "limit": "7", "open": "yes", "colour": "blue"})
        assert good.json() == {"as_of": "2026-03-31", "limit": 7, "open": True, "colour": "blue"}
        assert (await client.get("/q", params={"limit": " "})).json() == {
            "as_of": None,
            "limit": 50,
            "open": None,
            "colour": None,
        }
        for params, message in [
            ({"as_of": "31/03/2026"}, "as_of must be a date like 2026-03-31"),
            ({"limit": "ten"}, "limit must be a whole number"),
            ({"limit": "0"}, "limit must be between 1 and 100"),
            ({"open": "maybe"}, "open must be true or false"),
            ({"colour": "green"}, "colour must be one of red, blue"),
            ({"refuse": "1"}, "refuse says no"),
        ]:
            r = await client.get("/q", params=params)
            assert (r.status_code, r.json()) == (400, {"error": message}), params
