"""Keys: services refuse a missing or public key; NHS numbers are sealed; dead-letter metadata
is authenticated; patient references survive a key rotation."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from homeward.kit.consumer import Record, without_untrusted_headers
from homeward.kit.crypto import (
    DEVELOPMENT_KEY,
    KeyProblem,
    NhsNumberCipher,
    check_key,
    dead_letter_mac,
    verify_dead_letter_mac,
)
from homeward.kit.pseudonym import Pseudonymiser, patient_ref
from homeward.kit.service import ServiceDefinition, ServiceRuntime, StartupError
from homeward.kit.settings import CommonSettings, ServiceSettings
from homeward.testing import Infra
from pydantic import SecretStr

NHS = "9990000018"
KEY_A, KEY_B = "a" * 32 + "-first-key", "b" * 32 + "-second-key"


@pytest.fixture(autouse=True)
def _no_keys_from_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gives its keys itself (the session's are in the environment)."""
    for name in ("PATIENT_REF_KEY", "PATIENT_REF_KEY_PREVIOUS", "NHS_NUMBER_KEY", "NHS_NUMBER_KEY_PREVIOUS"):
        monkeypatch.delenv(f"HOMEWARD_{name}", raising=False)
    monkeypatch.delenv("HOMEWARD_DLQ_HMAC_KEY", raising=False)


def _runtime(database: str, infra: Infra, **common: str) -> ServiceRuntime:
    keys = {name: SecretStr(value) for name, value in common.items()}
    settings = ServiceSettings(
        database_url=database,
        http_port=0,
        kafka=infra.kafka_settings("nostart."),
        common=CommonSettings.model_validate(keys),
    )
    return ServiceRuntime(ServiceDefinition(name="budget", settings=settings, migrations=None))


async def test_a_service_refuses_to_start_with_the_development_key(infra: Infra, database: str) -> None:
    with pytest.raises(StartupError) as caught:
        await _runtime(database, infra, patient_ref_key=DEVELOPMENT_KEY).start()
    message = str(caught.value)
    assert "HOMEWARD_PATIENT_REF_KEY" in message and "development key" in message
    assert "secrets.token_urlsafe(32)" in message  # how to make one


async def test_a_service_refuses_to_start_without_a_key_or_with_a_short_one(infra: Infra, database: str) -> None:
    with pytest.raises(StartupError, match="HOMEWARD_PATIENT_REF_KEY is not set"):
        await _runtime(database, infra, patient_ref_key="").start()
    with pytest.raises(StartupError, match="HOMEWARD_PATIENT_REF_KEY is shorter"):
        await _runtime(database, infra, patient_ref_key="short-key").start()
    with pytest.raises(StartupError, match="HOMEWARD_DLQ_HMAC_KEY is the public development key"):
        await _runtime(database, infra, patient_ref_key=KEY_A, dlq_hmac_key=DEVELOPMENT_KEY).start()


async def test_a_service_that_stores_nhs_numbers_needs_its_own_key(infra: Infra, database: str) -> None:
    runtime = _runtime(database, infra, patient_ref_key=KEY_A)
    runtime.d.stores_nhs_numbers = True
    with pytest.raises(StartupError, match="HOMEWARD_NHS_NUMBER_KEY is not set"):
        await runtime.start()
    same = _runtime(database, infra, patient_ref_key=KEY_A, nhs_number_key=KEY_A)
    same.d.stores_nhs_numbers = True
    with pytest.raises(StartupError, match="must differ"):
        await same.start()


async def test_a_service_refuses_to_start_without_its_database_url(infra: Infra) -> None:
    """The default is no longer the superuser: a service must be given its own account."""
    assert ServiceSettings().database_url == ""
    with pytest.raises(StartupError, match="HOMEWARD_SERVICE_DATABASE_URL is not set"):
        await _runtime("", infra, patient_ref_key=KEY_A).start()


def test_the_process_exits_1_naming_the_key(infra: Infra, database: str) -> None:
    script = textwrap.dedent(
        f"""
        import os
        os.environ["HOMEWARD_PATIENT_REF_KEY"] = {DEVELOPMENT_KEY!r}
        from homeward.kit.service import ServiceDefinition, run
        from homeward.kit.settings import KafkaSettings, ServiceSettings
        kafka = KafkaSettings(bootstrap_servers={infra.kafka_bootstrap!r}, topic_namespace="nostart.")
        settings = ServiceSettings(database_url={database!r}, http_port=0, kafka=kafka)
        run(ServiceDefinition(name="budget", settings=settings, migrations=None))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    output = done.stdout + done.stderr
    assert "cannot start" in output and "HOMEWARD_PATIENT_REF_KEY" in output
    assert "Traceback" not in output


def test_check_key_accepts_a_random_key_and_refuses_a_placeholder() -> None:
    check_key("X", "x" * 43)
    with pytest.raises(KeyProblem, match="placeholder"):
        check_key("X", "CHANGE-ME-to-at-least-32-random-bytes")
    check_key("X", None, required=False)
    with pytest.raises(KeyProblem):
        check_key("X", None)


def test_nhs_numbers_are_sealed_and_read_back_with_the_current_or_previous_key() -> None:
    old = NhsNumberCipher(KEY_A)
    sealed = old.seal(NHS)
    assert NHS.encode() not in sealed
    assert old.seal(NHS) != sealed  # a random nonce: the ciphertext does not identify the person
    assert old.open(sealed) == NHS
    rotated = NhsNumberCipher(KEY_B, previous=KEY_A)
    assert rotated.open(sealed) == NHS and not rotated.sealed_with_current(sealed)
    assert rotated.sealed_with_current(rotated.seal(NHS))
    with pytest.raises(ValueError, match="HOMEWARD_NHS_NUMBER_KEY"):
        NhsNumberCipher(KEY_B).open(sealed)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ValueError, match="integrity"):
        old.open(tampered)


def test_references_are_made_with_the_new_key_and_found_with_both() -> None:
    p = Pseudonymiser(KEY_B, previous=KEY_A)
    assert p.ref(NHS) == patient_ref(NHS, KEY_B)
    assert p.refs(NHS) == [patient_ref(NHS, KEY_B), patient_ref(NHS, KEY_A)]
    assert Pseudonymiser(KEY_B).refs(NHS) == [patient_ref(NHS, KEY_B)]


def test_the_dead_letter_mac_covers_every_field_and_the_record() -> None:
    key = b"k" * 32
    meta = [("homeward-dlq-topic", b"partner.RYG.events"), ("homeward-dlq-reason", b"malformed-json")]
    record = {"record_key": b"PLC-1", "value": b"{}", "headers": [("traceparent", b"1")]}
    mac = dead_letter_mac(key, meta, **record)  # type: ignore[arg-type]
    assert verify_dead_letter_mac([b"other" * 8, key], mac, meta, **record)  # type: ignore[arg-type]
    assert not verify_dead_letter_mac([b"other" * 8], mac, meta, **record)  # type: ignore[arg-type]
    redirected = [("homeward-dlq-topic", b"partner.05A.events"), meta[1]]
    assert not verify_dead_letter_mac([key], mac, redirected, **record)  # type: ignore[arg-type]
    for change in ({"record_key": b"PLC-2"}, {"value": b"[]"}, {"headers": []}):
        assert not verify_dead_letter_mac([key], mac, meta, **{**record, **change})  # type: ignore[arg-type]


def test_homeward_headers_from_a_partner_are_dropped_at_intake() -> None:
    headers = (("traceparent", b"1"), ("homeward-dlq-topic", b"x"), ("HOMEWARD-Trace", b"y"), ("ce_id", b"1"))
    record = Record("partner.RYG.events", 0, 0, None, b"{}", headers)
    assert without_untrusted_headers(record, from_partner=True).headers == (("traceparent", b"1"), ("ce_id", b"1"))
    # From anyone else, only dead-letter metadata is dropped (it is true only on a dead-letter topic).
    assert without_untrusted_headers(record, from_partner=False).headers == (
        ("traceparent", b"1"),
        ("HOMEWARD-Trace", b"y"),
        ("ce_id", b"1"),
    )


def test_the_dead_letter_key_is_its_own_or_derived_and_an_operator_needs_only_it() -> None:
    derived = CommonSettings.model_validate({"patient_ref_key": SecretStr(KEY_A)}).dead_letter_keys()
    own = CommonSettings.model_validate({"dlq_hmac_key": SecretStr(KEY_B)}).dead_letter_keys()
    both = CommonSettings.model_validate(
        {"patient_ref_key": SecretStr(KEY_A), "dlq_hmac_key": SecretStr(KEY_B)}
    ).dead_letter_keys()
    assert len(derived) == len(own) == 1 and derived != own
    assert both == own + derived  # signs with its own; still verifies what the derived key signed
    rotating = CommonSettings.model_validate(
        {"patient_ref_key": SecretStr(KEY_B), "patient_ref_key_previous": SecretStr(KEY_A)}
    ).dead_letter_keys()
    assert rotating[1:] == derived
    with pytest.raises(KeyProblem, match="HOMEWARD_PATIENT_REF_KEY is not set"):
        CommonSettings().dead_letter_keys()
