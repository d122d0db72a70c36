"""The front door's pure rules: content modes, parsing as the Kafka path does, admission,
problems, keys, rate limits, the topic list, and the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from front_door_support import AT, NHS, allocation, binary_body, binary_headers, event, placement
from homeward.contracts import new_event, partner_source
from homeward.contracts.events import LocalCapacityChanged
from homeward.ingress.domain.admission import admit
from homeward.ingress.domain.binding import Mode, Problem, mode_of, parse_request
from homeward.ingress.domain.keys import key_id_of, matches, new_key, ods_code
from homeward.ingress.domain.ratelimit import TokenBuckets
from homeward.ingress.entrypoints import openapi
from homeward.ingress.entrypoints.http import PartnerTopics
from homeward.kit.inbox import digest
from schemathesis.specs.openapi.definitions import OPENAPI_31

ODS = "RX1"


def admitted(mode: Mode, body: bytes, headers: dict[str, str] | None = None, ods: str = ODS) -> list[Any]:
    return admit(ods, parse_request(mode, headers or {}, body))


def refused(mode: Mode, body: bytes, headers: dict[str, str] | None = None, ods: str = ODS) -> Problem:
    with pytest.raises(Problem) as caught:
        admitted(mode, body, headers, ods)
    return caught.value


def fields(problem: Problem) -> list[str]:
    return [p.field for p in problem.errors]


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        ("application/cloudevents+json", Mode.STRUCTURED),
        ("application/cloudevents+json; charset=UTF-8", Mode.STRUCTURED),
        ("Application/CloudEvents-Batch+JSON", Mode.BATCH),
        ("application/json", Mode.BINARY),
        ("application/json;charset=utf-8", Mode.BINARY),
        ("application/vnd.rx1+json", Mode.BINARY),
    ],
)
def test_the_content_type_names_the_mode(content_type: str, mode: Mode) -> None:
    assert mode_of(content_type) is mode


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/cloudevents+avro",
        "application/json; charset=latin-1",
        "multipart/form-data",
    ],
)
def test_any_other_content_type_is_415(content_type: str | None) -> None:
    with pytest.raises(Problem) as caught:
        mode_of(content_type)
    assert caught.value.status == 415 and "Accept-Post" in caught.value.headers


def test_the_three_modes_give_the_same_event() -> None:
    e = event(ODS, placement(ODS, "PLC-1"), id="e-1")
    [structured] = admitted(Mode.STRUCTURED, e.to_json())
    [binary] = admitted(Mode.BINARY, binary_body(e), binary_headers(e))
    [batched] = admitted(Mode.BATCH, json.dumps([e.to_dict()]).encode())
    for a in (structured, binary, batched):
        assert a.event.to_dict() == e.to_dict()
        assert (a.key, a.value, a.headers) == e.to_kafka()
        assert a.digest == digest(e)  # the kit's inbox digest: "same content" as everywhere else


def test_binary_mode_header_values_are_percent_decoded() -> None:
    e = event(ODS, placement(ODS, "PLC-1"), id="id with spaces%")
    headers = binary_headers(e) | {"ce-id": "id%20with%20spaces%25", "ce-subject": "PLC-1", "ce-origin": "caf%C3%A9"}
    [a] = admitted(Mode.BINARY, binary_body(e), headers)
    assert a.event.id == "id with spaces%"
    assert a.event.extensions == {"origin": "café"}


def test_binary_mode_names_the_header_at_fault() -> None:
    e = event(ODS, placement(ODS, "PLC-1"))
    no_version = {k: v for k, v in binary_headers(e).items() if k != "ce-specversion"}
    assert fields(refused(Mode.BINARY, binary_body(e), no_version)) == ["ce-specversion"]
    problem = refused(Mode.BINARY, binary_body(e), binary_headers(e) | {"ce-time": "yesterday"})
    assert problem.status == 400 and fields(problem) == ["ce-time"] and problem.reason == "invalid-envelope"
    problem = refused(Mode.BINARY, b"{not json", binary_headers(e))
    assert problem.reason == "malformed-json" and fields(problem) == ["data"]


def test_invalid_events_are_400_with_the_field_and_the_reason_of_the_kafka_path() -> None:
    good = event(ODS, placement(ODS, "PLC-1")).to_dict()
    bad_nhs = json.loads(json.dumps(good))
    bad_nhs["data"]["nhs_number"] = NHS[:-1] + str((int(NHS[-1]) + 1) % 10)
    problem = refused(Mode.STRUCTURED, json.dumps(bad_nhs).encode())
    assert (problem.status, problem.reason, fields(problem)) == (400, "invalid-payload", ["data.nhs_number"])
    assert NHS not in json.dumps(problem.body())  # a problem never repeats the value
    unknown = refused(Mode.STRUCTURED, json.dumps(good | {"type": "homeward.PlacementTeleported.v1"}).encode())
    assert (unknown.reason, fields(unknown)) == ("unknown-type", ["type"])
    malformed = refused(Mode.STRUCTURED, b'{"specversion": "1.0", "id": ')
    assert (malformed.reason, fields(malformed)) == ("malformed-json", ["(body)"])
    deep = refused(Mode.STRUCTURED, b"[" * 100_000 + b"]" * 100_000)
    assert deep.reason == "malformed-json"
    nul = refused(Mode.STRUCTURED, json.dumps(good | {"id": "a\x00b"}).encode())
    assert (nul.reason, fields(nul)) == ("invalid-envelope", ["id"])


def test_a_batch_is_all_or_nothing_and_names_each_bad_event_by_its_index() -> None:
    good = [event(ODS, placement(ODS, f"PLC-{i}")).to_dict() for i in range(3)]
    good[1]["data"]["daily_rate_pence"] = 545.0
    del good[2]["time"]
    problem = refused(Mode.BATCH, json.dumps(good).encode())
    assert problem.status == 400
    assert fields(problem) == ["[1].data.daily_rate_pence", "[2].time"]
    assert "2 of the 3 events" in problem.detail
    assert fields(refused(Mode.BATCH, b"[]")) == ["(body)"]
    assert refused(Mode.BATCH, json.dumps(good[0]).encode()).reason == "malformed-json"  # not an array
    assert fields(refused(Mode.BATCH, json.dumps([good[0], 7]).encode())) == ["[1]"]


def test_authorisation_is_the_kafka_paths_and_answers_403() -> None:
    other = event("RX2", placement("RX2", "PLC-1"))
    problem = refused(Mode.STRUCTURED, other.to_json())
    assert (problem.status, problem.reason, fields(problem)) == (403, "wrong-organisation", ["source"])
    service = event(ODS, placement(ODS, "PLC-1")).to_dict() | {"source": "urn:homeward:placements"}
    assert refused(Mode.STRUCTURED, json.dumps(service).encode()).status == 403
    capacity = LocalCapacityChanged.model_validate_json(
        json.dumps({"area": "QWU", "bed_type": "picu", "available_beds": 1, "as_of": "2026-03-01T07:00:00Z"})
    )
    internal = new_event(capacity, source=partner_source(ODS), time=AT)  # a service's fact "from" a partner
    problem = refused(Mode.STRUCTURED, internal.to_json())
    assert (problem.status, problem.reason, fields(problem)) == (403, "not-allowed", ["type"])
    mixed = [event(ODS, allocation(ODS)).to_dict(), other.to_dict()]
    assert fields(refused(Mode.BATCH, json.dumps(mixed).encode())) == ["[1].source"]
    # A system suffix still names the organisation.
    [ok] = admitted(Mode.STRUCTURED, new_event(allocation(ODS), source=partner_source(ODS, "epr"), time=AT).to_json())
    assert ok.event.organisation == ODS


def test_one_id_twice_in_a_batch_is_one_event_if_the_same_else_409() -> None:
    e = event(ODS, placement(ODS, "PLC-1"), id="x")
    same = admitted(Mode.BATCH, json.dumps([e.to_dict(), e.to_dict()]).encode())
    assert [a.ident for a in same] == [(e.source, "x")] * 2
    changed = e.to_dict()
    changed["data"]["daily_rate_pence"] += 1
    problem = refused(Mode.BATCH, json.dumps([e.to_dict(), changed]).encode())
    assert (problem.status, fields(problem)) == (409, ["[1].id"])


def test_problems_have_one_shape() -> None:
    body = Problem(400, "invalid-event", f"nhs {NHS} is wrong", reason="invalid-payload").body()
    assert set(body) == {"type", "title", "status", "detail", "reason", "errors"}
    assert body["errors"] == [] and NHS not in body["detail"]
    assert set(Problem(401, "unauthenticated", "no key").body()) == {"type", "title", "status", "detail"}


def test_keys_are_random_found_by_their_id_and_checked_against_a_digest() -> None:
    a, b = new_key(), new_key()
    assert a.key != b.key and a.key_id != b.key_id
    assert key_id_of(a.key) == a.key_id and a.key_id not in a.key.split("_", 2)[2]
    assert matches(a.key, a.digest) and not matches(b.key, a.digest)
    assert a.key not in a.digest
    for junk in ("", "hwk_", a.key + "x", a.key.replace("hwk_", "abc_"), "Bearer " + a.key):
        assert key_id_of(junk) is None
    assert ods_code(" rx1 ") == "RX1"
    with pytest.raises(ValueError):
        ods_code("R")


def test_a_token_bucket_per_partner() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate_per_s=2, burst=3, now=lambda: now[0])
    assert [buckets.take("A") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("A") == pytest.approx(0.5)
    assert buckets.take("B") == 0  # another partner has its own bucket
    now[0] = 0.5
    assert buckets.take("A") == 0
    now[0] = 100
    assert [buckets.take("A") for _ in range(4)][-1] > 0  # never more than the burst saved up


async def test_the_topic_list_is_cached_and_a_missing_topic_looked_up_again() -> None:
    now = [0.0]
    calls: list[int] = []
    topics = {"partner.A.events"}

    async def lister() -> set[str]:
        calls.append(1)
        return set(topics)

    directory = PartnerTopics(lister, max_age_s=60, recheck_s=2, now=lambda: now[0])
    assert await directory.exists("partner.A.events") and len(calls) == 1
    assert not await directory.exists("partner.B.events") and len(calls) == 1  # just listed
    topics.add("partner.B.events")
    now[0] = 3
    assert await directory.exists("partner.B.events") and len(calls) == 2
    now[0] = 30
    assert await directory.exists("partner.A.events") and len(calls) == 2

    async def down() -> set[str]:
        calls.append(1)
        raise OSError("Kafka is away")

    directory._list = down
    now[0] = 100
    assert await directory.exists("partner.A.events")  # known: the outbox holds the event meanwhile
    assert len(calls) == 3
    with pytest.raises(OSError):
        await directory.exists("partner.C.events")
    assert await directory.exists("partner.B.events") and len(calls) == 3  # no new lookup just after a failure
    now[0] = 103
    with pytest.raises(OSError):
        await directory.exists("partner.C.events")
    assert len(calls) == 4


def test_the_openapi_document_is_valid_openapi_3_1_and_describes_every_answer() -> None:
    doc = openapi.document()
    jsonschema_rs.validator_for(OPENAPI_31).validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    loaded = schemathesis.openapi.from_dict(doc)
    loaded.validate()
    post = doc["paths"]["/events"]["post"]
    assert set(post["responses"]) == {"200", "202", "400", "401", "403", "409", "413", "415", "429", "503"}
    assert set(post["requestBody"]["content"]) == {
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        "application/json",
    }
    assert post["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def test_the_committed_openapi_document_is_current() -> None:
    assert not openapi.stale(), (
        "contracts/openapi-ingress.json is stale: run `uv run python -m homeward.ingress.entrypoints.openapi --write`"
    )


class _FailingPool:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def fetchrow(self, *_: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [(ConnectionRefusedError("database away"), 503), (TimeoutError(), 503), (RuntimeError("a bug"), 500)],
)
async def test_an_outage_is_503_and_a_fault_500_in_the_same_shape(error: Exception, status: int) -> None:
    import httpx
    from front_door_support import assert_problem, auth
    from homeward.ingress.entrypoints.http import FrontDoor
    from homeward.ingress.settings import IngressSettings
    from starlette.applications import Starlette

    door = FrontDoor(_FailingPool(error), IngressSettings())  # type: ignore[arg-type]
    app = Starlette(routes=door.routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress") as http:
        r = await http.post("/events", content=b"{}", headers=auth(new_key().key))
    body = assert_problem(r, status)
    if status == 503:
        assert r.headers["retry-after"] == "5"
    assert "a bug" not in body["detail"]
