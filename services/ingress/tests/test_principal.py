"""Every event the ingress forwards names the principal that could have written it, and a
partner cannot choose that name (docs/authority.md, docs/kafka-security.md)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest
from front_door_support import STRUCTURED, allocation, auth, event, http_address, issue_key, partner_topics
from homeward.contracts import parse_kafka
from homeward.contracts.access import PRINCIPAL_EXTENSION, partner_principal
from homeward.kit.service import ServiceRuntime
from homeward.kit.testing import KafkaProbe

pytestmark = pytest.mark.integration


async def test_forwarded_events_name_their_principal_and_a_partner_cannot_forge_it(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    await partner_topics(kafka, "05A")
    # Over Kafka, claiming to be someone else in the extension.
    forged = dataclasses.replace(
        event("05A", allocation("05A"), id="kafka-1"), extensions={PRINCIPAL_EXTENSION: "User:homeward-admin"}
    )
    await kafka.send(kafka.topics.partner("05A"), forged)
    # Over HTTP, with an API key.
    key = await issue_key(ingress, "05A")
    posted = event("05A", allocation("05A", 7_000_00), id="http-1")
    async with httpx.AsyncClient(base_url=await http_address(ingress)) as client:
        r = await client.post(
            "/events",
            content=json.dumps(posted.to_dict()),
            headers={**auth(key), "content-type": STRUCTURED},
        )
    assert r.status_code == 202, r.text

    def both(records: list[Any]) -> bool:
        return {parse_kafka(x.value, x.headers).id for x in records} >= {"kafka-1", "http-1"}

    records = await kafka.read(kafka.topics.internal("ingress"), until=both, timeout=60)
    named = {e.id: e.extensions.get(PRINCIPAL_EXTENSION) for e in (parse_kafka(x.value, x.headers) for x in records)}
    assert named["kafka-1"] == f"User:{partner_principal('05A', kafka.topics.namespace)}"
    key_id = key.split("_")[1]
    assert named["http-1"] == f"apikey:{key_id}"
