import io
import json
import logging

import pytest
import structlog
from homeward.kit.clock import FixedClock
from homeward.kit.kafka import broker_security, client_options
from homeward.kit.logging import configure_logging, get_logger, redact_text
from homeward.kit.pseudonym import patient_ref
from homeward.kit.settings import KafkaSettings, ServiceSettings


def _capture(fn) -> list[dict]:  # type: ignore[no-untyped-def]
    configure_logging("test", "INFO", "json")
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    fn()
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_nhs_numbers_are_redacted_from_structlog_and_stdlib_logs() -> None:
    def emit() -> None:
        get_logger("t").info("placing 943 476 5919", nhs="9434765919", nested={"n": ["9434765919"]}, num=9434765919)
        logging.getLogger("aiokafka.fake").warning("record for 9434765919 failed")

    lines = _capture(emit)
    text = json.dumps(lines)
    assert "9434765919" not in text and "943 476 5919" not in text
    assert lines[0]["service"] == "test"
    assert lines[0]["nhs"] == "[REDACTED-NHS-NUMBER]"
    assert "[REDACTED-NHS-NUMBER]" in lines[1]["event"]


def test_bound_context_appears_in_json_lines() -> None:
    def emit() -> None:
        structlog.contextvars.bind_contextvars(event_id="e-1", correlation_id="c-1")
        get_logger().info("handled")

    line = _capture(emit)[0]
    assert (line["event_id"], line["correlation_id"], line["level"]) == ("e-1", "c-1", "info")


def test_redaction_leaves_other_numbers_alone() -> None:
    assert redact_text("offset 123456789 and 12345678901") == "offset 123456789 and 12345678901"


def test_service_settings_read_their_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    class PlacementsSettings(ServiceSettings):
        model_config = {**ServiceSettings.model_config, "env_prefix": "HOMEWARD_PLACEMENTS_"}  # type: ignore[typeddict-item]

    monkeypatch.setenv("HOMEWARD_PLACEMENTS_DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("HOMEWARD_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("HOMEWARD_CLOCK", "2026-03-31T12:00:00Z")
    s = PlacementsSettings()
    assert s.database_url == "postgresql://x/y"
    assert s.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert s.common.clock is not None and s.common.clock.date().isoformat() == "2026-03-31"


def test_sasl_security_needs_no_code_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEWARD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("HOMEWARD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("HOMEWARD_KAFKA_SASL_USERNAME", "placements")
    monkeypatch.setenv("HOMEWARD_KAFKA_SASL_PASSWORD", "s3cret")
    k = KafkaSettings()
    opts = client_options(k)
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512" and opts["sasl_plain_password"] == "s3cret"
    assert "ssl_context" in opts
    sec = broker_security(k)
    assert type(sec).__name__ == "SASLScram512"


def test_patient_ref_is_stable_keyed_and_hides_the_number() -> None:
    a = patient_ref("943 476 5919", "k1")
    assert a == patient_ref("9434765919", "k1")
    assert a != patient_ref("9434765919", "k2")
    assert a.startswith("pt_") and "9434765919" not in a and len(a) == 35


def test_fixed_clock_moves_only_when_told() -> None:
    import datetime as dt

    c = FixedClock(dt.date(2028, 2, 29))
    assert c.today() == dt.date(2028, 2, 29)
    c.advance(dt.timedelta(days=1))
    assert c.today() == dt.date(2028, 3, 1)
