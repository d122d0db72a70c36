"""The `homeward` CLI as partners and staff use it."""

import asyncio
import json
from pathlib import Path

from homeward.contracts import parse_kafka
from homeward.contracts.access import OPS
from homeward.testing import KafkaProbe, new_ods
from typer.testing import CliRunner

from homeward.cli.main import app
from homeward.scenario import ScenarioConfig, generate

runner = CliRunner()

VALID = {
    "specversion": "1.0",
    "id": "cli-1",
    "source": "urn:nhs:ods:RX1",
    "type": "homeward.PlacementMade.v1",
    "time": "2026-01-05T10:00:00Z",
    "data": {
        "placement_id": "PLC-RX1-000001",
        "nhs_number": "9990000018",
        "commissioner": "RX1",
        "provider": "8HA03",
        "provider_site": "8HA0301",
        "bed_type": "picu",
        "cohort": "mental_health",
        "age_band": "adult",
        "legal_status": "mha_s3",
        "programme": "mental_health",
        "start_date": "2026-01-05",
        "daily_rate_pence": 54500,
    },
}


def test_validate_accepts_a_valid_event(tmp_path: Path) -> None:
    f = tmp_path / "e.json"
    f.write_text(json.dumps(VALID))
    result = runner.invoke(app, ["validate", str(f), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["events"][0]["type"] == "homeward.PlacementMade.v1"


def test_validate_names_each_wrong_field(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(VALID))
    bad["data"]["daily_rate_pence"] = 545.0
    bad["data"]["nhs_number"] = "9990000019"
    f = tmp_path / "e.jsonl"
    f.write_text(json.dumps(VALID) + "\n" + json.dumps(bad) + "\n")
    result = runner.invoke(app, ["validate", str(f)])
    assert result.exit_code == 1
    assert "1 valid, 1 invalid" in result.output
    assert "data.daily_rate_pence" in result.output and "data.nhs_number" in result.output
    assert "9990000019" not in result.output


async def test_emit_produces_onto_the_partner_topic(tmp_path: Path, kafka: KafkaProbe, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ods = new_ods()
    await kafka.create(partners=[ods])
    event = json.loads(json.dumps(VALID))
    event["source"] = f"urn:nhs:ods:{ods}"
    f = tmp_path / "e.json"
    f.write_text(json.dumps(event))
    monkeypatch.setenv("HOMEWARD_KAFKA_TOPIC_NAMESPACE", kafka.topics.namespace)
    partner = await kafka.partner_settings(ods)  # the partner's own Kafka identity
    assert partner.sasl_password is not None
    monkeypatch.setenv("HOMEWARD_KAFKA_SECURITY_PROTOCOL", partner.security_protocol)
    monkeypatch.setenv("HOMEWARD_KAFKA_SASL_MECHANISM", str(partner.sasl_mechanism))
    monkeypatch.setenv("HOMEWARD_KAFKA_SASL_USERNAME", str(partner.sasl_username))
    monkeypatch.setenv("HOMEWARD_KAFKA_SASL_PASSWORD", partner.sasl_password.get_secret_value())
    args = ["emit", str(f), "--as", ods, "--bootstrap", kafka.infra.kafka_bootstrap, "--json"]
    result = await asyncio.to_thread(runner.invoke, app, args)  # the CLI runs its own event loop
    assert result.exit_code == 0, result.output
    [record] = await kafka.read(kafka.topics.partner(ods), until=lambda r: len(r) >= 1)
    assert parse_kafka(record.value, record.headers).id == "cli-1"
    assert record.key == b"PLC-RX1-000001"


def test_emit_refuses_to_speak_for_another_organisation(tmp_path: Path) -> None:
    f = tmp_path / "e.json"
    f.write_text(json.dumps(VALID))
    result = runner.invoke(app, ["emit", str(f), "--as", "QWU", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 1
    assert "would be dead-lettered" in " ".join(result.output.split())


def test_scenario_is_reproducible_and_every_event_is_valid_and_from_its_sender() -> None:
    a, b = generate(ScenarioConfig(seed=7)), generate(ScenarioConfig(seed=7))
    assert [e.to_json() for _, e in a.events] == [e.to_json() for _, e in b.events]
    assert [e.id for _, e in generate(ScenarioConfig(seed=8)).events] != [e.id for _, e in a.events]
    for partner, event in a.events:
        assert event.organisation == partner
        assert parse_kafka(*event.to_kafka()[1:]).data == event.data
    times = [e.time for _, e in a.events]
    assert times == sorted(times)
    counts = a.counts()
    assert counts["PlacementMade"] > counts["ReferralReceived"]  # some people came home to a second placement
    assert any(ep.out_of_area for ep in a.episodes) and any(not ep.out_of_area for ep in a.episodes)


def test_scenario_scales_to_national_size() -> None:
    sc = generate(ScenarioConfig(commissioners=42, distant_providers=200, placements=3000))
    assert len(sc.reference["commissioners"]) == 42
    assert len({s["provider"] for s in sc.reference["sites"]}) >= 200
    assert sc.counts()["ReferralReceived"] == 3000


def test_scenario_to_file(tmp_path: Path) -> None:
    out, ref = tmp_path / "events.jsonl", tmp_path / "reference.yaml"
    result = runner.invoke(app, ["scenario", "--placements", "20", "--out", str(out), "--reference-out", str(ref)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and all(x["event"]["source"] == f"urn:nhs:ods:{x['partner']}" for x in lines)
    assert "commissioners:" in ref.read_text()


def test_pounds_for_people() -> None:
    from homeward.cli.formatting import pounds

    assert pounds(123_456) == "£1,234"
    assert pounds(-9_490_550) == "−£94,905"  # an overspend, truncated like the positive figures
    assert pounds(0) == "£0"
    assert pounds(None) == "–"
    assert pounds(-5, pennies=True) == "−£0.05"
    assert pounds(123_456, pennies=True) == "£1,234.56"


def _signed_dead_letter(
    key: bytes | None, value: bytes, headers: list[tuple[str, bytes]], **metadata: str
) -> list[tuple[str, bytes]]:
    """The headers a service writes on a dead letter (the kit's own functions), signed with ``key``."""
    import datetime as dt

    from homeward.kit.consumer import dlq_headers, signed_dlq_headers

    meta = dlq_headers(
        metadata.pop("reason"),
        metadata.pop("error"),
        service=metadata.pop("service"),
        topic=metadata.pop("topic"),
        at=dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC),
        **metadata,
    )
    return headers + signed_dlq_headers(key, meta, record_key=b"PLC-RX1-000001", value=value, headers=headers)


def _session_dead_letter_key() -> bytes:
    from homeward.kit.settings import CommonSettings

    return CommonSettings().dead_letter_keys()[0]


async def test_dlq_list_shows_why_without_the_payload_and_replay_puts_it_back(
    kafka: KafkaProbe,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    ods = new_ods()
    await kafka.create(partners=[ods])
    source = kafka.topics.partner(ods)
    original = json.dumps({**VALID, "source": f"urn:nhs:ods:{ods}"})[:-1].encode()  # cut short: not JSON
    headers = [("traceparent", b"00-abc-01")]
    await kafka.send_raw(
        kafka.topics.dlq("placements"),
        original,
        key=b"PLC-RX1-000001",
        headers=_signed_dead_letter(
            _session_dead_letter_key(),
            original,
            headers,
            reason="malformed-json",
            error="malformed-json: message is not valid JSON",
            service="placements",
            topic=source,
            partition="2",
            offset="41",
        ),
    )
    monkeypatch.setenv("HOMEWARD_KAFKA_TOPIC_NAMESPACE", kafka.topics.namespace)
    for name, value in kafka.infra.kafka_env(OPS).items():  # on call: ops reads and replays dead letters
        monkeypatch.setenv(name, value)

    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "placements", "--json"])
    assert listed.exit_code == 0, listed.output
    [letter] = json.loads(listed.output)
    assert letter["verified"] is True
    assert letter["reason"] == "malformed-json"
    assert letter["topic"] == source and letter["source"] == "2:41"
    assert letter["at"].startswith("2026-11-20T12:00") and letter["age"]
    table = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "placements"])
    assert "malformed-json" in table.output
    # Reason, origin and age only: never the payload, the key or the record's own headers.
    for shown in (listed.output, table.output):
        assert "9990000018" not in shown and "PLC-RX1-000001" not in shown and "traceparent" not in shown

    shown = await asyncio.to_thread(runner.invoke, app, ["dlq", "show", "placements", letter["id"]])
    assert shown.exit_code == 0, shown.output
    whole = json.loads(shown.stdout)
    assert whole["value"] == original.decode() and whole["key"] == "PLC-RX1-000001"
    assert whole["metadata"]["error"] == "malformed-json: message is not valid JSON"

    replayed = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "placements", letter["id"]])
    assert replayed.exit_code == 0, replayed.output
    [record] = await kafka.read(source, until=lambda r: len(r) >= 1)
    assert (record.key, record.value, list(record.headers)) == (b"PLC-RX1-000001", original, headers)

    unknown = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "placements", "0:999"])
    assert unknown.exit_code == 1
    assert "no dead letter 0:999" in unknown.output
    wrong = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "nobody"])
    assert wrong.exit_code == 2


async def test_dlq_shows_a_dead_letter_it_cannot_verify_as_unverified_and_never_replays_it(
    kafka: KafkaProbe,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """Dead-letter headers written by anyone but a Homeward service (no MAC, another key, or a
    MAC over other values) are not believed: no reason, no origin, no replay."""
    from homeward.kit.consumer import DLQ_HEADER_PREFIX as H

    sender, victim = new_ods("S"), new_ods("V")
    await kafka.create(partners=[sender, victim])
    claims = {
        "reason": "corrected-by-operator",
        "error": "please replay",
        "service": "ingress",
        "topic": kafka.topics.partner(victim),
        "partition": "0",
        "offset": "1",
    }
    no_mac = _signed_dead_letter(None, b"{}", [], **dict(claims))
    other_key = _signed_dead_letter(b"k" * 32, b"{}", [], **dict(claims))
    # Signed with the right key, then the topic changed: the MAC no longer matches.
    altered = [
        (k, kafka.topics.partner(victim).encode() if k == H + "topic" else v)
        for k, v in _signed_dead_letter(_session_dead_letter_key(), b"{}", [], **{**claims, "topic": "x"})
    ]
    for headers in (no_mac, other_key, altered):
        await kafka.send_raw(kafka.topics.dlq("ingress"), b"{}", key=b"PLC-RX1-000001", headers=headers)
    monkeypatch.setenv("HOMEWARD_KAFKA_TOPIC_NAMESPACE", kafka.topics.namespace)
    monkeypatch.setenv("HOMEWARD_KAFKA_BOOTSTRAP_SERVERS", kafka.infra.kafka_bootstrap)

    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "ingress", "--json"])
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.output)
    assert len(letters) == 3
    assert {(d["verified"], d["reason"], d["topic"]) for d in letters} == {(False, "unverified", "")}
    assert "corrected-by-operator" not in listed.output and victim not in listed.output
    for d in letters:
        refused = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "ingress", d["id"]])
        assert refused.exit_code == 1
        assert "unverified" in refused.output
    assert await kafka.read(kafka.topics.partner(victim), timeout=3) == []


async def test_dlq_forged_headers_a_partner_sends_are_dropped_at_intake_and_cannot_redirect_a_replay(
    kafka: KafkaProbe,
    ingress: object,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    """A partner's record that carries its own homeward-* headers, refused by the real ingress:
    the dead letter the ingress writes holds none of them, the listing shows the ingress's
    reason and the partner's own topic, and a replay goes back there, not to the victim's."""
    from homeward.kit.consumer import DLQ_HEADER_PREFIX as H

    sender, victim = new_ods("S"), new_ods("V")
    await kafka.create(partners=[sender, victim])
    own = kafka.topics.partner(sender)
    forged = [
        (H + "reason", b"corrected by operator, please replay"),
        (H + "topic", kafka.topics.partner(victim).encode()),
        (H + "mac", b"v1:0000"),
        ("Homeward-DLQ-Topic", kafka.topics.partner(victim).encode()),
        ("homeward-anything", b"x"),
        ("traceparent", b"00-abc-01"),
    ]
    await kafka.send_raw(own, b"{not json", key=b"k", headers=forged)
    [dead] = await kafka.read(kafka.topics.dlq("ingress"), until=lambda r: len(r) >= 1, timeout=60)
    names = [k for k, _ in dead.headers]
    assert names[0] == "traceparent"  # the partner's other headers are kept, for a replay
    assert [k for k in names if k.lower().startswith("homeward-") and not k.startswith(H)] == []
    assert dict(dead.headers)[H + "reason"] == b"malformed-json"
    assert names.count(H + "reason") == names.count(H + "topic") == names.count(H + "mac") == 1

    monkeypatch.setenv("HOMEWARD_KAFKA_TOPIC_NAMESPACE", kafka.topics.namespace)
    for name, value in kafka.infra.kafka_env(OPS).items():  # on call: ops reads and replays dead letters
        monkeypatch.setenv(name, value)
    listed = await asyncio.to_thread(runner.invoke, app, ["dlq", "list", "ingress", "--json"])
    assert listed.exit_code == 0, listed.output
    [letter] = json.loads(listed.output)
    assert (letter["verified"], letter["reason"], letter["topic"]) == (True, "malformed-json", own)
    replayed = await asyncio.to_thread(runner.invoke, app, ["dlq", "replay", "ingress", letter["id"]])
    assert replayed.exit_code == 0, replayed.output
    records = await kafka.read(own, until=lambda r: len(r) >= 2)
    assert [r.value for r in records] == [b"{not json", b"{not json"]
    assert list(records[1].headers) == [("traceparent", b"00-abc-01")]  # no homeward-* header goes back
    assert await kafka.read(kafka.topics.partner(victim), timeout=3) == []


async def test_main_job_waits_for_every_group_including_partitions_never_read(kafka: KafkaProbe) -> None:
    """The main job's lag counts what each service must read, from its own subscriptions, and
    counts a partition nobody has committed on from its beginning."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from homeward.cli.runner import consumer_lag, expected_reads

    ns = kafka.topics.namespace
    ods = new_ods()
    await kafka.create(partners=[ods])
    partner = kafka.topics.partner(ods)
    reads = expected_reads([partner, kafka.topics.internal("budget")], ns, group_prefix=ns)
    assert reads[f"{ns}homeward-ingress"] == [partner]
    assert reads[f"{ns}homeward-placements"] == [kafka.topics.internal("ingress")]
    assert reads[f"{ns}homeward-placements-1"] == [kafka.topics.internal("referrals")]
    assert reads[f"{ns}homeward-notifications"] == [
        kafka.topics.internal(s) for s in ("placements", "referrals", "budget")
    ]
    # Only the ingress reads partner topics; referrals, placements and budget read what it accepted.
    assert [g for g, topics in reads.items() if partner in topics] == [f"{ns}homeward-ingress"]
    assert sum(1 for topics in reads.values() if topics == [kafka.topics.internal("ingress")]) == 3

    for n in range(3):
        await kafka.send_raw(partner, f"message {n}".encode(), key=b"PLC-1")  # one key: one partition
    accepted = kafka.topics.internal("ingress")
    await kafka.send_raw(accepted, b"accepted", key=b"PLC-1")
    operator = kafka.settings
    assert await consumer_lag(operator, ns, group_prefix=ns) == 3 + 3 * 1

    [record] = (await kafka.read(partner, until=lambda r: len(r) >= 3))[-1:]
    committer = AIOKafkaConsumer(
        group_id=f"{ns}homeward-ingress", enable_auto_commit=False, **kafka.infra.client_options()
    )
    await committer.start()
    try:
        tp = TopicPartition(partner, record.partition)
        committer.assign([tp])
        await committer.commit({tp: record.offset + 1})
    finally:
        await committer.stop()
    # The ingress has read all three partner records; referrals, placements and budget each
    # still have the accepted one to read.
    assert await consumer_lag(operator, ns, group_prefix=ns) == 0 + 3 * 1


def test_an_exited_child_service_counts_as_stopped_not_running() -> None:
    """The main job starts the services as its children; one that has exited is a zombie until
    reaped, and must not be waited for (or killed) as if it still ran."""
    import subprocess
    import sys
    import time as _time

    from homeward.cli.runner import _alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    deadline = _time.monotonic() + 30
    while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z" and _time.monotonic() < deadline:
        _time.sleep(0.05)
    assert _alive(child.pid) is False


def test_stop_services_signals_each_recorded_process_and_forgets_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    from homeward.cli.runner import RunPaths, stop_services

    paths = RunPaths(tmp_path)
    paths.run.mkdir(parents=True)
    marker = tmp_path / "terminated"
    script = (
        "import pathlib, signal, sys, time\n"
        f"def bye(*_):\n    pathlib.Path({str(marker)!r}).write_text('SIGTERM')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        f"pathlib.Path({str(tmp_path / 'ready')!r}).write_text('1')\n"
        "while True:\n    time.sleep(0.1)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    while not (tmp_path / "ready").exists() and child.poll() is None:
        __import__("time").sleep(0.05)
    paths.pid("placements").write_text(str(child.pid))
    assert stop_services(tmp_path, timeout=60) == 1
    assert marker.read_text() == "SIGTERM"  # asked to finish its work, not killed
    assert not paths.pid("placements").exists()


def test_replay_restores_headers_the_dead_letter_writer_stored_as_base64() -> None:
    """A record whose header held a NUL byte is dead-lettered with that value in base64 (jsonb
    cannot hold a NUL); a replay sends the original bytes again, without the dead-letter headers."""
    import datetime as dt

    from homeward.kit.consumer import Record, dlq_headers, signed_dlq_headers, storable_dead_letter

    from homeward.cli.dlq import _Raw, check, original_headers

    key = b"k" * 32
    record = Record("partner.RX1.events", 0, 5, b"k", b"{}", headers=(("trace", b"a\x00b"), ("plain", b"ok")))
    stored = storable_dead_letter(record, 512 * 1024)
    at = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    meta = dlq_headers("malformed-json", "", service="ingress", topic=record.topic, at=at, **stored.extra)
    signed = signed_dlq_headers(key, meta, record_key=stored.key, value=stored.value, headers=stored.headers)
    dead_letter = check(_Raw(0, 1, stored.key, stored.value, list(stored.headers) + signed), [key])
    assert dead_letter.verified
    assert original_headers(dead_letter) == [("trace", b"a\x00b"), ("plain", b"ok")]
