"""Partners' clients against the running ingress: the official CloudEvents SDK's HTTP binding,
and an event posted over HTTP all the way into the placement register."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from front_door_support import NHS, allocation, auth, event, http_address, issue_key, partner_topics, placement
from homeward.contracts import parse_kafka
from homeward.kit.clock import FixedClock
from homeward.kit.service import ServiceRuntime
from homeward.placements.entrypoints.app import build_definition as placements_definition
from homeward.placements.settings import PlacementsSettings
from homeward.testing import KafkaProbe, eventually, new_ods, service_tuning

pytestmark = pytest.mark.integration


def sdk_event(ods: str, id: str, data: dict[str, Any]) -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": id,
            "source": f"urn:nhs:ods:{ods}/finance system",  # a space: percent-encoded in binary mode
            "type": "homeward.BudgetAllocated.v1",
            "specversion": "1.0",
            "time": dt.datetime(2026, 4, 1, 9, tzinfo=dt.UTC),
            "datacontenttype": "application/json",
            "subject": ods,
        },
        data=data,
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_official_cloudevents_sdk_http_binding_is_understood(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    from cloudevents.v1.http import CloudEvent as LegacyCloudEvent
    from cloudevents.v1.http import to_binary, to_structured

    ods = new_ods("S")
    await partner_topics(kafka, ods)
    key = await issue_key(ingress, ods)
    data = allocation(ods).model_dump(mode="json")
    messages: list[tuple[dict[str, str], bytes]] = []
    for id, convert in (("sdk-structured", to_structured_event), ("sdk-binary", to_binary_event)):
        message = convert(sdk_event(ods, id, data))
        messages.append((dict(message.headers), message.body))
    # The SDK's older API (cloudevents.http in the 1.x releases).
    for id, legacy in (("sdk-v1-structured", to_structured), ("sdk-v1-binary", to_binary)):
        attributes = {"id": id, "source": f"urn:nhs:ods:{ods}", "type": "homeward.BudgetAllocated.v1"}
        attributes |= {"time": "2026-04-01T09:00:00Z", "datacontenttype": "application/json", "subject": ods}
        headers, body = legacy(LegacyCloudEvent(attributes, data))
        messages.append((dict(headers), body))
    async with httpx.AsyncClient(base_url=await http_address(ingress), timeout=30) as http:
        for headers, body in messages:
            r = await http.post("/events", content=body, headers=headers | auth(key))
            assert r.status_code == 202, (headers, r.text)
    ids = ["sdk-structured", "sdk-binary", "sdk-v1-structured", "sdk-v1-binary"]
    records = await kafka.read(kafka.topics.partner(ods), until=lambda r: len(r) >= 4, timeout=60, settle=2)
    events = {e.id: e for e in (parse_kafka(r.value, r.headers) for r in records)}
    assert sorted(events) == sorted(ids)
    assert events["sdk-binary"].source == f"urn:nhs:ods:{ods}/finance system"  # percent-decoded
    assert {e.data.model_dump(mode="json") == data for e in events.values()} == {True}


REFERENCE = """
commissioners:
  - {code: 05A, area: QWU, name: NHS Coventry and Rugby}
sites:
  - {code: RYG01, provider: RYG, area: QWU, name: Caludon Centre}
"""


@pytest.fixture
async def placements(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> AsyncIterator[ServiceRuntime]:
    await partner_topics(kafka, "05A")
    (tmp_path / "reference.yaml").write_text(REFERENCE)
    settings = PlacementsSettings(
        database_url=database,
        reference_data=tmp_path / "reference.yaml",
        **service_tuning(kafka, "placements"),
    )
    runtime = ServiceRuntime(placements_definition(settings), clock=FixedClock(dt.date(2026, 1, 5)))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def test_an_event_posted_over_http_reaches_the_placement_register(
    placements: ServiceRuntime, ingress: ServiceRuntime, database: str
) -> None:
    key = await issue_key(ingress, "05A")
    made = event("05A", placement("05A", "PLC-HTTP-1", nhs=NHS, provider_site_area="QAB"), id="http-1")
    async with httpx.AsyncClient(base_url=await http_address(ingress), timeout=30) as http:
        r = await http.post(
            "/events", content=made.to_json(), headers=auth(key) | {"content-type": "application/cloudevents+json"}
        )
    assert r.status_code == 202, r.text

    async def registered() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database)
        try:
            return list(await conn.fetch("SELECT * FROM placements WHERE placement_id = 'PLC-HTTP-1'"))
        finally:
            await conn.close()

    rows = await eventually(registered, timeout=90)
    assert rows, "the placement never reached the register"
    assert rows[0]["commissioner"] == "05A" and rows[0]["provider_site"] == "8HA0301"
