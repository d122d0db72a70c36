"""docs/partner-guide.md, word for word: its kcat commands against the real broker, and its
curl commands, in each content mode, against the running ingress."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from front_door_support import http_address, issue_key, partner_topics
from homeward.contracts import parse_kafka
from homeward.kit.inbox import digest
from homeward.kit.service import ServiceRuntime
from homeward.kit.testing import KafkaProbe

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


@pytest.mark.skipif(shutil.which("kcat") is None or shutil.which("jq") is None, reason="kcat and jq are not installed")
async def test_the_guides_kcat_commands_send_one_event_each(kafka: KafkaProbe, tmp_path: Path) -> None:
    await partner_topics(kafka, "RX1")
    (tmp_path / "event.json").write_text(example_event())
    commands = [body for info, body in blocks("Send it with any Kafka client") if info == "sh" and "kcat" in body]
    assert len(commands) == 2
    topic = kafka.topics.partner("RX1")
    for command in commands:
        # Only the placeholders change: the broker's address, and this test's topic namespace.
        runnable = command.replace("BOOTSTRAP", kafka.infra.kafka_bootstrap).replace("partner.RX1.events", topic)
        code, out, err = await sh(runnable, tmp_path, {})
        assert code == 0, (command, out, err)
    records = await kafka.read(topic, until=lambda r: len(r) >= 2, timeout=60, settle=2)
    assert len(records) == 2  # one message per command, not one per line of the file
    first, second = sorted(records, key=lambda r: (r.timestamp, r.offset))
    assert json.loads(first.value) == json.loads(example_event())  # the whole event, in one message
    structured, binary = parse_kafka(first.value, first.headers), parse_kafka(second.value, second.headers)
    assert (binary.source, binary.id) == (structured.source, structured.id)
    assert digest(binary) == digest(structured)  # the same event: the ingress takes it once
    assert {r.key for r in records} == {b"PLC-RX1-000001"}


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
