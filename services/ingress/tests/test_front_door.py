"""The HTTP front door on the real Kafka and PostgreSQL: every answer of POST /events, the
events on the partner's topic and, read back by the ingress, on homeward.ingress.v1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from front_door_support import (
    BATCH,
    NHS,
    STRUCTURED,
    allocation,
    assert_problem,
    auth,
    binary_body,
    binary_headers,
    event,
    http_address,
    issue_key,
    partner_topics,
    placement,
)
from homeward.contracts import parse_kafka
from homeward.contracts.events import LocalCapacityChanged
from homeward.ingress.adapters import keys
from homeward.ingress.entrypoints.openapi import committed_path
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, new_ods, ops_headers, staff_headers

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def client(runtime: ServiceRuntime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=await http_address(runtime), timeout=30) as c:
        yield c


async def rows(runtime: ServiceRuntime, sql: str) -> list[asyncpg.Record]:
    assert runtime.pool is not None
    return list(await runtime.pool.fetch(sql))


async def test_events_over_http_are_taken_once_and_reach_the_partner_topic_and_the_services(
    kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    ods = new_ods("H")
    await partner_topics(kafka, ods)
    key = await issue_key(ingress, ods)
    first = event(ods, placement(ods, "PLC-1"), id="h-1")
    async with client(ingress) as http:
        # structured mode: 202, then an exact resend (in any mode) is 200 and changes nothing
        r = await http.post("/events", content=first.to_json(), headers=auth(key) | {"content-type": STRUCTURED})
        assert r.status_code == 202, r.text
        assert r.json() == {"id": "h-1", "source": first.source, "type": first.type, "status": "accepted"}
        r = await http.post("/events", content=first.to_json(), headers=auth(key) | {"content-type": STRUCTURED})
        assert (r.status_code, r.json()["status"]) == (200, "duplicate")
        r = await http.post("/events", content=binary_body(first), headers=auth(key) | binary_headers(first))
        assert (r.status_code, r.json()["status"]) == (200, "duplicate"), r.text
        # the same id with other content: 409, with the field
        reused = first.to_dict()
        reused["data"]["daily_rate_pence"] += 1
        r = await http.post("/events", json=reused, headers=auth(key) | {"content-type": STRUCTURED})
        body = assert_problem(r, 409, "conflicting-duplicate")
        assert body["errors"] == [{"field": "id", "problem": "already used for a different event"}]
        # binary mode, with the key in X-API-Key
        money = event(ods, allocation(ods))
        r = await http.post("/events", content=binary_body(money), headers={"x-api-key": key} | binary_headers(money))
        assert (r.status_code, r.json()["id"]) == (202, money.id), r.text
        # a batch: new events and a resend, answered with every id in order
        batch = [event(ods, placement(ods, "PLC-2")), event(ods, placement(ods, "PLC-3")), first]
        payload = json.dumps([e.to_dict() for e in batch]).encode()
        r = await http.post("/events", content=payload, headers=auth(key) | {"content-type": BATCH})
        assert r.status_code == 202, r.text
        assert r.json()["ids"] == [e.id for e in batch]
        assert [e["status"] for e in r.json()["events"]] == ["accepted", "accepted", "duplicate"]
        assert (r.json()["accepted"], r.json()["duplicates"]) == (2, 1)
        r = await http.post("/events", content=payload, headers=auth(key) | {"content-type": BATCH})
        assert (r.status_code, r.json()["accepted"]) == (200, 0)

    sent = [first, money, batch[0], batch[1]]
    on_partner_topic = await kafka.read(kafka.topics.partner(ods), until=lambda r: len(r) >= 4, timeout=60, settle=2)
    assert len(on_partner_topic) == 4
    for record in on_partner_topic:
        parsed = parse_kafka(record.value, record.headers)
        assert record.key == parsed.data.key().encode()  # keyed by the entity
        # Structured mode, with the type named beside it (not believed from a partner's topic).
        assert list(record.headers) == [("content-type", STRUCTURED.encode()), ("homeward-type", parsed.type.encode())]
    assert sorted(parse_kafka(r.value, r.headers).id for r in on_partner_topic) == sorted(e.id for e in sent)
    by_id = {parse_kafka(r.value, r.headers).id: r for r in on_partner_topic}
    assert by_id["h-1"].value == first.to_json()

    # The ingress reads its partner topic back like any other: on to the services.
    accepted = await kafka.read(kafka.topics.internal("ingress"), until=lambda r: len(r) >= 4, timeout=60, settle=2)
    assert sorted(parse_kafka(r.value, r.headers).id for r in accepted) == sorted(e.id for e in sent)
    dead = await kafka.read(kafka.topics.dlq("ingress"), timeout=2)
    assert dead == []
    receipts = await rows(ingress, "SELECT source, event_id, digest FROM http_receipts")
    assert len(receipts) == 4


async def test_every_refusal_is_one_problem_shape_and_takes_nothing(kafka: KafkaProbe, ingress: ServiceRuntime) -> None:
    ods, other, topicless = new_ods("H"), new_ods("J"), new_ods("N")
    await partner_topics(kafka, ods, other)
    key = await issue_key(ingress, ods)
    good = event(ods, placement(ods, "PLC-1"))
    structured = auth(key) | {"content-type": STRUCTURED}
    async with client(ingress) as http:
        # 400: the field at fault, with the Kafka path's reason
        bad = good.to_dict()
        bad["data"]["nhs_number"] = NHS[:-1] + str((int(NHS[-1]) + 1) % 10)
        body = assert_problem(await http.post("/events", json=bad, headers=structured), 400, "invalid-event")
        assert (body["reason"], [e["field"] for e in body["errors"]]) == ("invalid-payload", ["data.nhs_number"])
        assert NHS[:-1] not in json.dumps(body)
        batch = [event(ods, allocation(ods)).to_dict(), bad]
        body = assert_problem(await http.post("/events", json=batch, headers=auth(key) | {"content-type": BATCH}), 400)
        assert [e["field"] for e in body["errors"]] == ["[1].data.nhs_number"]
        # 401: no key, a malformed one, a wrong one, a revoked one
        r = await http.post("/events", content=good.to_json(), headers={"content-type": STRUCTURED})
        assert assert_problem(r, 401, "unauthenticated") and r.headers["www-authenticate"].startswith("Bearer")
        for wrong in ("not-a-key", key[:-1] + ("A" if key[-1] != "A" else "B"), "hwk_000000000000_" + "A" * 43):
            r = await http.post("/events", content=good.to_json(), headers=auth(wrong) | {"content-type": STRUCTURED})
            assert_problem(r, 401)
        revoked = await issue_key(ingress, ods)
        assert ingress.pool is not None
        await keys.revoke(ingress.pool, ods, key_id=revoked.split("_")[1])
        r = await http.post("/events", content=good.to_json(), headers=auth(revoked) | {"content-type": STRUCTURED})
        assert_problem(r, 401)
        # 403: another organisation's source; a type only services publish
        theirs = event(other, placement(other, "PLC-9"))
        body = assert_problem(await http.post("/events", content=theirs.to_json(), headers=structured), 403)
        assert (body["reason"], body["errors"][0]["field"]) == ("wrong-organisation", "source")
        capacity = LocalCapacityChanged.model_validate_json(
            json.dumps({"area": "QWU", "bed_type": "picu", "available_beds": 1, "as_of": "2026-03-01T07:00:00Z"})
        )
        body = assert_problem(
            await http.post("/events", content=event(ods, capacity).to_json(), headers=structured), 403, "forbidden"
        )
        assert body["reason"] == "not-allowed"
        # 409: one id for two different events in one batch
        twin = good.to_dict()
        twin["data"]["daily_rate_pence"] += 1
        r = await http.post("/events", json=[good.to_dict(), twin], headers=auth(key) | {"content-type": BATCH})
        assert assert_problem(r, 409)["errors"] == [
            {"field": "[1].id", "problem": "also used by [0] for a different event"}
        ]
        # 413: by Content-Length, and by the streamed body when there is none
        big = b" " * (256 * 1024) + good.to_json()
        assert_problem(await http.post("/events", content=big, headers=structured), 413, "too-large")

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):
                yield b" " * 8192

        r = await http.post("/events", content=chunks(), headers=structured)
        assert "content-length" not in r.request.headers
        assert_problem(r, 413)
        # 415: a content type that is no CloudEvents mode
        r = await http.post("/events", content=good.to_json(), headers=auth(key) | {"content-type": "text/plain"})
        assert_problem(r, 415, "unsupported-media-type")
        # 405 for other methods, in the same shape
        r = await http.get("/events", headers=auth(key))
        assert assert_problem(r, 405) and r.headers["allow"] == "POST"
        # 503: a partner whose topic does not exist yet (nothing may be queued for it)
        r = await http.post(
            "/events",
            content=event(topicless, allocation(topicless)).to_json(),
            headers=auth(await issue_key(ingress, topicless)) | {"content-type": STRUCTURED},
        )
        assert assert_problem(r, 503, "unavailable")["detail"].startswith(f"{topicless}'s topic")
        # the OpenAPI document served is the one committed
        served = (await http.get("/openapi.json")).json()
        committed = committed_path()
        assert committed is not None and served == json.loads(committed.read_text())
        # A partner's API key is not a staff token: the staff routes refuse it; ops see metrics
        staff_only = await http.get("/metrics", headers=auth(key))
        assert staff_only.status_code == 401 and staff_only.headers["content-type"] == "application/problem+json"
        assert (await http.post("/admin/run-jobs", headers=auth(key))).status_code == 401
        assert (await http.get("/metrics", headers=staff_headers(ods, "provider"))).status_code == 403
        assert (await http.get("/metrics", headers=ops_headers())).status_code == 200
        assert (await http.get("/healthz")).status_code == 200
    assert await rows(ingress, "SELECT * FROM http_receipts") == []
    assert await rows(ingress, "SELECT * FROM outbox WHERE topic LIKE '%partner.%'") == []


async def test_past_its_rate_a_partner_is_answered_429_with_retry_after(
    kafka: KafkaProbe, ingress_factory: Callable[..., Any]
) -> None:
    async with ingress_factory(http_rate_per_s=0.2, http_rate_burst=2) as runtime:
        busy, quiet = new_ods("H"), new_ods("Q")
        busy_key, quiet_key = await issue_key(runtime, busy), await issue_key(runtime, quiet)
        async with client(runtime) as http:

            async def post(key: str) -> httpx.Response:
                return await http.post("/events", content=b"{}", headers=auth(key) | {"content-type": STRUCTURED})

            answers = [await post(busy_key) for _ in range(3)]
            assert [a.status_code for a in answers] == [400, 400, 429]
            assert_problem(answers[2], 429, "rate-limited")
            assert 1 <= int(answers[2].headers["retry-after"]) <= 5
            assert (await post(quiet_key)).status_code == 400  # each partner has its own bucket
            # An unauthenticated request costs nobody a token.
            r = await http.post("/events", content=b"{}", headers={"content-type": STRUCTURED})
            assert r.status_code == 401


async def test_many_requests_at_once_take_each_event_once(kafka: KafkaProbe, ingress: ServiceRuntime) -> None:
    ods = new_ods("H")
    await partner_topics(kafka, ods)
    key = await issue_key(ingress, ods)
    events = [event(ods, placement(ods, f"PLC-{i}"), id=f"c-{i}") for i in range(5)]
    async with client(ingress) as http:
        answers = await asyncio.gather(
            *(
                http.post("/events", content=e.to_json(), headers=auth(key) | {"content-type": STRUCTURED})
                for e in events * 4
            )
        )
    assert sorted(a.status_code for a in answers) == [200] * 15 + [202] * 5
    on_topic = await kafka.read(kafka.topics.partner(ods), until=lambda r: len(r) >= 5, timeout=60, settle=2)
    assert sorted(parse_kafka(r.value, r.headers).id for r in on_topic) == sorted(e.id for e in events)
