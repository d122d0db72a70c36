import httpx
from homeward.kit.db import create_pool, migrate
from homeward.kit.http import build_app
from homeward.kit.metrics import EVENTS_HANDLED


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
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
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
