"""Starting the referrals service in-process against the real Kafka and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml
from homeward.contracts import Event, Payload, parse_kafka
from homeward.kit.clock import FixedClock
from homeward.kit.http import build_app
from homeward.kit.service import ServiceRuntime
from homeward.kit.settings import CommonSettings
from homeward.referrals.entrypoints import http
from homeward.referrals.entrypoints.app import build_definition
from homeward.referrals.settings import ReferralsSettings
from homeward.testing import KafkaProbe

from .factories import KEY


def write_reference(path: Path, commissioners: dict[str, str], sites: Sequence[tuple[str, str, str]]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "commissioners": [{"code": c, "area": a} for c, a in commissioners.items()],
                "sites": [{"code": s, "provider": p, "area": a} for s, p, a in sites],
            }
        )
    )
    return path


async def start(database: str, kafka: KafkaProbe, clock: FixedClock, reference: Path | None = None) -> ServiceRuntime:
    settings = ReferralsSettings(
        database_url=database,
        http_port=0,
        retry_backoff_s=0.01,
        batch_timeout_ms=50,
        outbox_poll_interval_s=0.2,
        scheduler_interval_s=3600,
        pool_max_size=8,
        reference_data=reference,
        kafka=kafka.service_settings("referrals").model_copy(update={"metadata_max_age_ms": 1000}),
        common=CommonSettings(patient_ref_key=KEY),  # type: ignore[arg-type]
    )
    runtime = ServiceRuntime(build_definition(settings), clock=clock)
    await runtime.start()
    return runtime


def api(runtime: ServiceRuntime, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    """The read API, signed in with ``headers`` (staff_headers) unless a request says otherwise."""
    assert runtime.pool is not None
    settings = runtime.settings
    assert isinstance(settings, ReferralsSettings)
    app = build_app("referrals", {}, routes=http.routes(runtime.pool, runtime.clock, settings.wait_thresholds_hours))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://referrals", headers=headers)


async def fetchval(database: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(database)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def events(records: Sequence[Any]) -> list[Event[Payload]]:
    return [parse_kafka(r.value, r.headers) for r in records]


def of(records: Sequence[Any], cls: type[Payload]) -> list[Any]:
    return [e.data for e in events(records) if isinstance(e.data, cls)]
