"""docs/partner-guide.md, word for word: its kcat commands against the real broker, and its
curl commands, in each content mode, against the running ingress."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from front_door_support import http_address, issue_key, partner_topics
from homeward.contracts import parse_kafka
from homeward.kit.inbox import digest
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, recent_librdkafka

pytestmark = pytest.mark.integration

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "partner-guide.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


def blocks(section: str) -> list[tuple[str, str]]:
    """(info string, text) of each fenced block in the guide's section whose heading contains ``section``."""
    text = GUIDE.read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    [part] = [p for p in parts if p.splitlines()[0].find(section) >= 0]
    return [(m.group("info").strip(), m.group("body")) for m in FENCE.finditer(part)]


def example_event() -> str:
    return next(body for info, body in blocks("Build the event") if info == "json")


async def sh(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


def test_debian_kcat_alone_cannot_sign_in_to_kafka_4(tmp_path: Path) -> None:
    """Why the guide names a librdkafka version: if Debian's kcat ever gets one that signs in,
    the guide's note is out of date, and this test says so."""
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=30).stdout
    version = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", out)
    assert version is not None, out
    assert tuple(int(v) for v in version.groups()) < (2, 6, 1), "Debian's kcat is recent enough: update the guide"


async def test_the_guides_kcat_commands_send_one_event_each(kafka: KafkaProbe, tmp_path: Path) -> None:
    await partner_topics(kafka, "RX1")
    (tmp_path / "event.json").write_text(example_event())
    [onboard] = [body for info, body in blocks("Send it with any Kafka client") if "partner add" in body]
    commands = [body for info, body in blocks("Send it with any Kafka client") if info == "sh" and "kcat" in body]
    assert len(commands) == 2
    # The operator's step, as written, in this test's namespace: it writes rx1.properties here.
    operator = {**kafka.infra.kafka_env(), "HOMEWARD_KAFKA_TOPIC_NAMESPACE": kafka.topics.namespace}
    code, out, err = await sh(
        onboard.replace("uv run homeward", f"{sys.executable} -m homeward.cli"), tmp_path, operator
    )
    assert code == 0, (onboard, out, err)
    assert "sasl.password=" in (tmp_path / "rx1.properties").read_text()
    topic = kafka.topics.partner("RX1")
    env = recent_librdkafka(tmp_path)
    for command in commands:
        # Only the topic changes: this test's namespace.
        runnable = command.replace("partner.RX1.events", topic)
        code, out, err = await sh(runnable, tmp_path, env)
        assert code == 0, (command, out, err)
    records = await kafka.read(topic, until=lambda r: len(r) >= 2, timeout=60, settle=2)
    assert len(records) == 2  # one message per command, not one per line of the file
    first, second = sorted(records, key=lambda r: (r.timestamp, r.offset))
    assert json.loads(first.value) == json.loads(example_event())  # the whole event, in one message
    structured, binary = parse_kafka(first.value, first.headers), parse_kafka(second.value, second.headers)
    assert (binary.source, binary.id) == (structured.source, structured.id)
    assert digest(binary) == digest(structured)  # the same event: the ingress takes it once
    assert {r.key for r in records} == {b"PLC-RX1-000001"}

    # The identity speaks for RX1 only: the same settings cannot write another partner's topic.
    await partner_topics(kafka, "RX2")
    other = commands[0].replace("partner.RX1.events", kafka.topics.partner("RX2"))
    code, out, err = await sh(other, tmp_path, env)
    assert "Topic authorization failed" in out + err, (code, out, err)
    code, out, err = await sh(f"{sys.executable} -m homeward.cli partner remove RX1", tmp_path, operator)
    assert code == 0, (out, err)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="curl and jq are not installed")
async def test_the_guides_curl_commands_in_each_mode(
    kafka: KafkaProbe, ingress: ServiceRuntime, tmp_path: Path
) -> None:
    await partner_topics(kafka, "RX1")
    http = blocks("Sending over HTTP")
    (tmp_path / "event.json").write_text(example_event())
    (tmp_path / "events.jsonl").write_text(next(body for info, body in http if info == "jsonl"))
    structured, binary, batch = [body for info, body in http if info == "sh" and "curl" in body]
    env = {"HOMEWARD_URL": await http_address(ingress), "HOMEWARD_API_KEY": await issue_key(ingress, "RX1")}

    async def run(command: str) -> tuple[int, dict[str, object]]:
        code, out, err = await sh(command, tmp_path, env)
        assert code == 0, (command, out, err)
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        return int(head.split()[1]), json.loads(body)

    status, body = await run(structured)
    assert (status, body["id"], body["status"]) == (202, "rx1-epr-000001", "accepted")
    status, body = await run(structured)  # the guide: run it again, and it is a resend
    assert (status, body["status"]) == (200, "duplicate")
    status, body = await run(binary)
    assert (status, body["id"], body["type"]) == (202, "rx1-epr-000002", "homeward.PlacementRateChanged.v1")
    status, body = await run(batch)
    assert (status, body["ids"], body["accepted"]) == (202, ["rx1-epr-000003", "rx1-epr-000004"], 2)

    records = await kafka.read(kafka.topics.partner("RX1"), until=lambda r: len(r) >= 4, timeout=60, settle=2)
    assert sorted(parse_kafka(r.value, r.headers).id for r in records) == [f"rx1-epr-00000{i}" for i in range(1, 5)]
