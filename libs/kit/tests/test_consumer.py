"""Consuming through FastStream against the real Kafka and PostgreSQL: inbox, retries,
dead letters, and the partner pattern subscription."""

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
from homeward.contracts import Event, new_event, parse_kafka, partner_source
from homeward.contracts.events import PlacementMade
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import Rejected, UnitOfWork
from homeward.kit.service import ServiceDefinition, ServiceRuntime, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.testing import KafkaProbe, eventually, new_ods

NHS = "9990000018"


def placement(pid: str, commissioner: str, **extra: Any) -> PlacementMade:
    data = {
        "placement_id": pid,
        "nhs_number": NHS,
        "commissioner": commissioner,
        "provider": "8HA03",
        "provider_site": "8HA0301",
        "bed_type": "picu",
        "cohort": "mental_health",
        "age_band": "adult",
        "legal_status": "mha_s3",
        "programme": "mental_health",
        "start_date": "2026-01-05",
        "daily_rate_pence": 54500,
        **extra,
    }
    return PlacementMade.model_validate_json(json.dumps(data))


async def handle_placement(event: Event[PlacementMade], uow: UnitOfWork[Any]) -> None:
    if event.data.placement_id == "PLC-POISON":
        raise RuntimeError("this placement always breaks the handler")
    if event.data.placement_id == "PLC-REFUSED":
        raise Rejected("not-party", "organisation is not party to this placement")
    await uow.conn.execute(
        "INSERT INTO seen (event_id, placement_id) VALUES ($1, $2)", event.id, event.data.placement_id
    )


async def _start(tmp_path: Path, database: str, kafka: KafkaProbe) -> ServiceRuntime:
    (tmp_path / "0001_seen.sql").write_text(
        "CREATE TABLE seen (event_id text NOT NULL, placement_id text PRIMARY KEY);"
    )
    settings = ServiceSettings(
        database_url=database,
        http_port=0,
        retry_backoff_s=0.01,
        batch_timeout_ms=50,
        outbox_poll_interval_s=0.2,
        kafka=kafka.settings.model_copy(update={"metadata_max_age_ms": 1000}),
    )
    runtime = ServiceRuntime(
        ServiceDefinition(
            name="placements",
            settings=settings,
            migrations=tmp_path,
            handlers={PlacementMade: handle_placement},
            subscriptions=[Subscription(partners=True)],
        ),
        clock=FixedClock(__import__("datetime").date(2026, 1, 6)),
    )
    await runtime.start()
    return runtime


async def _seen(database: str) -> list[str]:
    conn = await asyncpg.connect(database)
    try:
        return [r["placement_id"] for r in await conn.fetch("SELECT placement_id FROM seen ORDER BY placement_id")]
    finally:
        await conn.close()


async def test_bad_input_is_dead_lettered_with_reasons_and_valid_work_carries_on(
    tmp_path: Path, database: str, kafka: KafkaProbe
) -> None:
    ods, other = new_ods(), new_ods()
    await kafka.create(partners=[ods, other])
    topic = kafka.topics.partner(ods)
    runtime = await _start(tmp_path, database, kafka)
    try:
        good = new_event(placement("PLC-GOOD-1", ods), source=partner_source(ods))
        await kafka.send(topic, good)
        await kafka.send_raw(topic, b'{"specversion": "1.0", "id": ', key=b"PLC-X")
        await kafka.send(topic, new_event(placement("PLC-WRONG-ORG", other), source=partner_source(other)))
        bad_nhs = good.to_dict()
        bad_nhs["id"], bad_nhs["data"]["nhs_number"] = "bad-nhs", "9990000019"
        await kafka.send_raw(topic, json.dumps(bad_nhs).encode())
        unknown = {**good.to_dict(), "id": "unknown-type", "type": "homeward.PlacementTeleported.v1"}
        await kafka.send_raw(topic, json.dumps(unknown).encode())
        await kafka.send(topic, new_event(placement("PLC-POISON", ods), source=partner_source(ods)))
        await kafka.send(topic, new_event(placement("PLC-REFUSED", ods), source=partner_source(ods)))
        await kafka.send(topic, good)  # a redelivery of the same event id
        reused = good.to_dict()
        reused["data"]["daily_rate_pence"] = 99_900  # the same id for a different event
        # Same key as the first, so it is read after it: the first one seen is the event, the other the reuse.
        await kafka.send_raw(topic, json.dumps(reused).encode(), key=good.key.encode())
        # CloudEvents ids are unique per source: another partner may use the same id.
        same_id = new_event(placement("PLC-OTHER-1", other), source=partner_source(other), id=good.id)
        await kafka.send(kafka.topics.partner(other), same_id)
        await kafka.send(topic, new_event(placement("PLC-GOOD-2", ods), source=partner_source(ods)))

        want = ["PLC-GOOD-1", "PLC-GOOD-2", "PLC-OTHER-1"]
        assert await eventually(lambda: _seen_is(database, want), timeout=60)
        dlq = await kafka.read(kafka.topics.dlq("placements"), until=lambda r: len(r) >= 7, timeout=60)
        reasons = sorted(dict(r.headers)["homeward-dlq-reason"].decode() for r in dlq)
        assert reasons == sorted(
            [
                "malformed-json",
                "wrong-organisation",
                "invalid-payload",
                "unknown-type",
                "handler-failed",
                "not-party",
                "conflicting-duplicate",
            ]
        )
        for r in dlq:
            h = dict(r.headers)
            assert h["homeward-dlq-topic"].decode() == topic
            assert int(h["homeward-dlq-offset"].decode()) >= 0
            assert b"9990000019" not in h["homeward-dlq-error"]
        bad = next(r for r in dlq if dict(r.headers)["homeward-dlq-reason"] == b"invalid-payload")
        assert b"data.nhs_number" in dict(bad.headers)["homeward-dlq-error"]
        assert bad.value == json.dumps(bad_nhs).encode()  # the original bytes, untouched
        conflict = next(r for r in dlq if dict(r.headers)["homeward-dlq-reason"] == b"conflicting-duplicate")
        assert good.id.encode() in dict(conflict.headers)["homeward-dlq-error"]
        assert await _seen(database) == want  # the duplicates changed nothing
    finally:
        await runtime.stop()


async def _seen_is(database: str, expected: list[str]) -> bool:
    return await _seen(database) == expected


async def test_a_new_partner_topic_is_picked_up_without_restart(
    tmp_path: Path, database: str, kafka: KafkaProbe
) -> None:
    first = new_ods()
    await kafka.create(partners=[first])
    runtime = await _start(tmp_path, database, kafka)
    try:
        await kafka.send(
            kafka.topics.partner(first), new_event(placement("PLC-A", first), source=partner_source(first))
        )
        assert await eventually(lambda: _seen_is(database, ["PLC-A"]), timeout=60)
        late = new_ods()
        await kafka.create(partners=[late])
        await asyncio.sleep(0.5)
        await kafka.send(kafka.topics.partner(late), new_event(placement("PLC-B", late), source=partner_source(late)))
        assert await eventually(lambda: _seen_is(database, ["PLC-A", "PLC-B"]), timeout=60)
    finally:
        await runtime.stop()


async def test_replayed_batch_is_handled_once(tmp_path: Path, database: str, kafka: KafkaProbe) -> None:
    ods = new_ods()
    await kafka.create(partners=[ods])
    runtime = await _start(tmp_path, database, kafka)
    try:
        events = [new_event(placement(f"PLC-R{i}", ods), source=partner_source(ods)) for i in range(5)]
        for e in events + events + events:
            await kafka.send(kafka.topics.partner(ods), e)
        want = sorted(f"PLC-R{i}" for i in range(5))
        assert await eventually(lambda: _seen_is(database, want), timeout=60)
        # Replay the same records straight into the consumer, as a redelivery after a crash would.
        records = await kafka.read(kafka.topics.partner(ods), until=lambda r: len(r) >= 15)
        from homeward.kit.consumer import Record

        result = await runtime.consumer.handle_batch([Record.from_consumer_record(r) for r in records])
        assert (result.handled, result.duplicates) == (0, 15)
        assert await _seen(database) == want
        assert {parse_kafka(r.value, r.headers).id for r in records} == {e.id for e in events}
    finally:
        await runtime.stop()
