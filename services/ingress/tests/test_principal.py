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
from homeward.testing import KafkaProbe

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


async def test_an_oversized_correlationid_is_dead_lettered_and_the_next_event_goes_through(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    """Issue 12's attack: a 500 KB correlationid was copied into every internal event."""
    await partner_topics(kafka, "05A")
    big = event("05A", allocation("05A"), id="big-1").to_dict() | {"correlationid": "c" * 500_000}
    await kafka.send_raw(kafka.topics.partner("05A"), json.dumps(big).encode(), key=b"05A")
    await kafka.send(kafka.topics.partner("05A"), event("05A", allocation("05A", 9_000_00), id="after-1"))

    [dead] = await kafka.read(kafka.topics.dlq("ingress"), until=lambda r: len(r) >= 1, timeout=60, settle=1.0)
    headers = dict(dead.headers)
    assert headers["homeward-dlq-reason"] == b"invalid-envelope"
    assert b"correlationid" in headers["homeward-dlq-error"]
    forwarded = await kafka.read(
        kafka.topics.internal("ingress"),
        until=lambda rs: any(parse_kafka(r.value, r.headers).id == "after-1" for r in rs),
        timeout=60,
    )
    assert [parse_kafka(r.value, r.headers).id for r in forwarded] == ["after-1"]


async def test_a_partner_using_every_extension_still_gets_its_event_through_with_the_principal(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    await partner_topics(kafka, "05A")
    full = dataclasses.replace(
        event("05A", allocation("05A"), id="ext-20"), extensions={f"x{n:02d}": "v" for n in range(20)}
    )
    await kafka.send(kafka.topics.partner("05A"), full)
    [record] = await kafka.read(kafka.topics.internal("ingress"), until=lambda r: len(r) >= 1, timeout=60)
    forwarded = parse_kafka(record.value, record.headers)  # within the contracts' bound of 20
    assert forwarded.extensions[PRINCIPAL_EXTENSION] == f"User:{partner_principal('05A', kafka.topics.namespace)}"
    assert len(forwarded.extensions) == 20
