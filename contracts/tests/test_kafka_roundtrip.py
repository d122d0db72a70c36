"""Contracts through the real Kafka: our bytes round-trip, and kcat (a partner with no
Python) produces events Homeward reads and validates."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from homeward.contracts import new_event, parse_kafka, partner_source
from homeward.contracts.events import PlacementMade
from homeward.testing import KafkaProbe, kcat_config, new_ods, recent_librdkafka

from .factories import envelope, placement_made


async def test_round_trip_through_kafka_message_bytes(kafka: KafkaProbe) -> None:
    ods = new_ods()
    await kafka.create(partners=[ods])
    payload = PlacementMade.model_validate_json(json.dumps(placement_made(commissioner=ods)))
    sent = new_event(payload, source=partner_source(ods), correlationid="c-1")
    await kafka.send(kafka.topics.partner(ods), sent)
    [record] = await kafka.read(kafka.topics.partner(ods), until=lambda r: len(r) >= 1)
    got = parse_kafka(record.value, record.headers)
    assert record.key == b"PLC-QWU-000001"
    assert (got.id, got.type, got.source, got.correlationid) == (sent.id, sent.type, sent.source, "c-1")
    assert got.data == sent.data
    assert got.time == sent.time


def _kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.fail("kcat is not installed (Debian package kcat); .ci/run installs it")
    return path


async def test_kcat_structured_and_binary_events_are_read_and_validated(kafka: KafkaProbe, tmp_path: Path) -> None:
    ods = new_ods()
    await kafka.create(partners=[ods])
    topic = kafka.topics.partner(ods)
    # kcat signs in as the partner, with a librdkafka that Kafka 4 accepts.
    config = str(kcat_config(await kafka.partner_settings(ods), tmp_path / "partner.properties"))
    env = {**os.environ, **recent_librdkafka(tmp_path)}
    structured = envelope(placement_made(commissioner=ods), source=f"urn:nhs:ods:{ods}", id="kcat-structured")
    subprocess.run(
        [
            _kcat(),
            "-P",
            "-F",
            config,
            "-t",
            topic,
            "-k",
            "PLC-QWU-000001",
            "-H",
            "content-type=application/cloudevents+json",
        ],
        input=json.dumps(structured).encode(),
        check=True,
        timeout=30,
        env=env,
    )
    binary_data = placement_made(commissioner=ods, placement_id="PLC-BIN-1")
    subprocess.run(
        [
            _kcat(),
            "-P",
            "-F",
            config,
            "-t",
            topic,
            "-k",
            "PLC-BIN-1",
            "-H",
            "ce_specversion=1.0",
            "-H",
            "ce_id=kcat-binary",
            "-H",
            f"ce_source=urn:nhs:ods:{ods}",
            "-H",
            "ce_type=homeward.PlacementMade.v1",
            "-H",
            "ce_time=2026-01-05T10:00:00Z",
            "-H",
            "content-type=application/json",
        ],
        input=json.dumps(binary_data).encode(),
        check=True,
        timeout=30,
        env=env,
    )
    records = await kafka.read(topic, until=lambda r: len(r) >= 2)
    events = {e.id: e for e in (parse_kafka(r.value, r.headers) for r in records)}
    assert set(events) == {"kcat-structured", "kcat-binary"}
    assert events["kcat-binary"].data.placement_id == "PLC-BIN-1"
    assert events["kcat-structured"].organisation == ods
