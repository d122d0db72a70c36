"""A service whose handler keeps failing transiently turns not ready, naming the stalled consumer,
and ready again once the fault is gone: the real runtime, Kafka (as the service's own user) and
PostgreSQL, its real HTTP server. Nothing is timed: every wait is bounded only to fail instead
of hanging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx
from homeward.contracts import Event, new_event, service_source
from homeward.contracts.events import PlacementMade
from homeward.kit.consumer import UnitOfWork
from homeward.kit.service import ServiceDefinition, ServiceRuntime, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.testing import KafkaProbe, eventually, ops_headers, sample_placement


def _placement(pid: str) -> PlacementMade:
    return sample_placement(pid)


async def test_a_consumer_that_makes_no_progress_turns_readyz_503_until_it_moves_again(
    tmp_path: Path, database: str, kafka: KafkaProbe
) -> None:
    deadlocked = {"on": True}

    async def handle(event: Event[PlacementMade], uow: UnitOfWork[Any]) -> None:
        if deadlocked["on"]:
            raise asyncpg.exceptions.DeadlockDetectedError("deadlock detected")
        await uow.conn.execute("INSERT INTO seen VALUES ($1)", event.data.placement_id)

    (tmp_path / "0001_seen.sql").write_text("CREATE TABLE seen (placement_id text PRIMARY KEY);")
    group = f"{kafka.topics.namespace}homeward-budget"
    settings = ServiceSettings(
        database_url=database,
        http_port=0,
        consumer_group=group,
        batch_timeout_ms=50,
        outbox_poll_interval_s=0.2,
        scheduler_interval_s=3600,
        retry_backoff_s=0.01,
        transient_backoff_max_s=0.05,
        transient_retry_budget_s=0.2,
        stall_after_s=0.5,
        kafka=kafka.service_settings("budget").model_copy(update={"metadata_max_age_ms": 1000}),
    )
    runtime = ServiceRuntime(
        ServiceDefinition(
            name="budget",
            settings=settings,
            migrations=tmp_path,
            handlers={PlacementMade: handle},
            subscriptions=[Subscription(services=["placements"])],
        )
    )
    await runtime.start()
    try:
        assert runtime.server is not None
        await eventually(lambda: runtime.server is not None and runtime.server.started, timeout=30)
        port = runtime.server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=ops_headers()) as client:
            assert (await client.get("/readyz")).status_code == 200  # idle: nothing waits

            topic = kafka.topics.internal("placements")
            await kafka.send(topic, new_event(_placement("PLC-1"), source=service_source("placements")))

            async def not_ready() -> httpx.Response | None:
                r = await client.get("/readyz")
                return r if r.status_code == 503 else None

            stalled = await eventually(not_ready, timeout=60)
            assert stalled is not None, "the stalled consumer never turned the service not ready"
            body = stalled.json()
            assert body["checks"] == {"postgres": True, "kafka": True}  # both answer: it is the work that is stuck
            [stall] = body["stalled"]
            assert stall["what"] == f"consumer {group}" and stall["group"] == group
            assert stall["topics"] == [topic]
            assert any(w.startswith(f"{topic}[") for w in stall["waiting"])
            assert "DeadlockDetectedError" in stall["last_error"]
            assert stall["since"] and stall["seconds_without_progress"] >= 0.5
            assert (await client.get("/healthz")).status_code == 200  # liveness is not readiness
            metrics = (await client.get("/metrics")).text
            assert f'homeward_stalled{{service="budget",what="consumer {group}"}} 1.0' in metrics
            assert 'homeward_stalled{service="budget",what="outbox relay"} 0.0' in metrics

            deadlocked["on"] = False  # the fault is gone: the rewound batch commits

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            assert await eventually(ready, timeout=60), "the service did not turn ready once the batch committed"
            assert runtime.pool is not None
            assert await runtime.pool.fetchval("SELECT placement_id FROM seen") == "PLC-1"
            metrics = (await client.get("/metrics")).text
            assert f'homeward_stalled{{service="budget",what="consumer {group}"}} 0.0' in metrics
    finally:
        await runtime.stop()
