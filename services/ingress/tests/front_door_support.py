"""Helpers for the HTTP front door's tests: the running ingress's address, keys, events."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

import httpx
from homeward.contracts import Event, new_event, partner_source
from homeward.contracts.events import BudgetAllocated, Payload, PlacementMade
from homeward.contracts.identifiers import nhs_numbers_in_test_range
from homeward.ingress.adapters import keys
from homeward.kit.kafka import make_admin
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, eventually, sample_placement

NHS = nhs_numbers_in_test_range(1, start=3)[0]
AT = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PROBLEM = "application/problem+json"


async def http_address(runtime: ServiceRuntime, timeout: float = 30.0) -> str:
    """The base URL of a started runtime's HTTP server (it listens on the port it was given,
    or the one the system chose for port 0)."""
    deadline = time.monotonic() + timeout
    server = runtime.server
    assert server is not None, "the runtime was not started"
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("the ingress's HTTP server did not start")
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def partner_topics(kafka: KafkaProbe, *ods: str) -> None:
    """Create partners' topics and wait until Kafka lists them (on a loaded broker that can take
    longer than KafkaProbe.create waits): until then the front door answers 503 for them."""
    await kafka.create(partners=list(ods))
    wanted = {kafka.topics.partner(o) for o in ods}

    async def listed() -> bool:
        admin = make_admin(kafka.settings)
        await admin.start()
        try:
            return wanted <= set(await admin.list_topics())
        finally:
            await admin.close()

    assert await eventually(listed, timeout=180, interval=1), f"Kafka never listed {sorted(wanted)}"


async def issue_key(runtime: ServiceRuntime, ods: str) -> str:
    assert runtime.pool is not None
    return (await keys.issue(runtime.pool, ods)).key


def placement(ods: str, pid: str, *, nhs: str = NHS, rate: int = 54500, **extra: Any) -> PlacementMade:
    return sample_placement(pid, nhs_number=nhs, commissioner=ods, daily_rate_pence=rate, **extra)


def allocation(ods: str, amount: int = 100_000_00) -> BudgetAllocated:
    return BudgetAllocated.model_validate_json(
        json.dumps(
            {
                "commissioner": ods,
                "allocation_id": "ALLOC-1",
                "financial_year": "2026-27",
                "programme": "mental_health",
                "amount_pence": amount,
                "source": "nhs_england",
            }
        )
    )


def event(ods: str, payload: Payload, id: str | None = None) -> Event[Any]:
    return new_event(payload, source=partner_source(ods), time=AT, id=id)


def binary_headers(e: Event[Any]) -> dict[str, str]:
    """Binary mode: the attributes as ce-* headers (none needs percent-encoding here)."""
    return {f"ce-{k}": str(v) for k, v in e.attributes().items() if k != "datacontenttype"} | {
        "content-type": "application/json"
    }


def binary_body(e: Event[Any]) -> bytes:
    return json.dumps(e.data.model_dump(mode="json", exclude_none=True)).encode()


def assert_problem(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert body["type"].startswith("https://homeward.example/problems/")
    if kind is not None:
        assert body["type"].endswith("/" + kind), body
    if status == 400:
        assert body["errors"] and all(set(e) == {"field", "problem"} for e in body["errors"]), body
    return body


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
