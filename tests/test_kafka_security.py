"""The broker itself refuses what no grant allows: authentication (SASL/SCRAM-SHA-512) and
least-privilege ACLs (homeward.contracts.access), on the real Kafka the tests run against.

Each attack is tried with a real client and must fail with the broker's own refusal; the
legitimate path next to it must still work."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAuthorizationFailedError
from homeward.contracts import Event, new_event, parse_kafka
from homeward.contracts.access import OPS, partner_principal, service_principal
from homeward.contracts.events import BedAvailabilityUpdated
from homeward.contracts.topics import SERVICES
from homeward.contracts.vocab import BedType
from homeward.kit.kafka import client_options
from homeward.kit.service import ServiceRuntime
from homeward.kit.settings import KafkaSettings
from homeward.testing import Infra, KafkaProbe, eventually, new_ods
from pydantic import SecretStr

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _secured(infra: Infra) -> None:
    # Never skipped: a broker without authentication fails these tests.
    assert infra.secured, f"the Kafka at {infra.kafka_bootstrap} ({infra.origin}) has no SASL users"


def _availability(ods: str, n: int = 1) -> Event[Any]:
    import datetime as dt

    return new_event(
        BedAvailabilityUpdated.model_validate(
            {
                "provider": ods,
                "site": f"{ods}01",
                "site_area": "QWU",
                "bed_type": BedType.PICU,
                "available_beds": n,
                "total_beds": 10,
                "as_of": dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            }
        ),
        source=f"urn:nhs:ods:{ods}",
    )


async def _produce(settings: KafkaSettings, topic: str, value: bytes = b"{}") -> None:
    producer = AIOKafkaProducer(acks="all", request_timeout_ms=10_000, **client_options(settings))
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _read(settings: KafkaSettings, topic: str) -> list[Any]:
    """Read partition 0 from the beginning; raises TopicAuthorizationFailedError if the broker
    refuses to describe the topic (aiokafka only logs that) or to fetch from it."""
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer._client.force_metadata_update()
        if topic in consumer._client.cluster.unauthorized_topics:
            raise TopicAuthorizationFailedError(topic)
        await consumer.seek_to_beginning(tp)
        records: list[Any] = []
        for _ in range(5):
            batch = await consumer.getmany(tp, timeout_ms=500)
            records += batch.get(tp, [])
        return records
    finally:
        await consumer.stop()


async def _connects(settings: KafkaSettings) -> None:
    admin = AIOKafkaAdminClient(request_timeout_ms=5000, **client_options(settings))
    try:
        await asyncio.wait_for(admin.start(), 20)
        await asyncio.wait_for(admin.list_topics(), 20)
    finally:
        await admin.close()


async def test_a_client_without_credentials_is_refused(kafka: KafkaProbe) -> None:
    anonymous = KafkaSettings(bootstrap_servers=kafka.infra.kafka_bootstrap)  # PLAINTEXT
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await _connects(anonymous)
    await _connects(kafka.settings)  # the listener itself answers


async def test_a_wrong_password_is_refused(kafka: KafkaProbe) -> None:
    right = kafka.service_settings("placements")
    assert right.sasl_password is not None
    wrong = right.model_copy(update={"sasl_password": SecretStr(right.sasl_password.get_secret_value() + "x")})
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await _connects(wrong)
    await _connects(right)


async def test_a_partner_writes_only_its_own_topic(kafka: KafkaProbe) -> None:
    a, b = new_ods("A"), new_ods("B")
    await kafka.create(partners=[a, b])
    as_a = await kafka.partner_settings(a)
    await _produce(as_a, kafka.topics.partner(a))  # its own: accepted
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(as_a, kafka.topics.partner(b))
    for topic in (kafka.topics.internal("ingress"), kafka.topics.internal("budget")):
        with pytest.raises(TopicAuthorizationFailedError):
            await _produce(as_a, topic)


async def test_a_partner_reads_nothing_internal_or_dead_lettered(kafka: KafkaProbe) -> None:
    a = new_ods("A")
    await kafka.create(partners=[a])
    as_a = await kafka.partner_settings(a)
    await kafka.send_raw(kafka.topics.dlq("placements"), b"a dead letter", key=b"9990000018")
    for topic in (
        kafka.topics.internal("ingress"),  # partner data, NHS numbers included
        kafka.topics.internal("placements"),
        kafka.topics.dlq("placements"),
        kafka.topics.partner(a),  # not even its own: it writes, Homeward reads
    ):
        with pytest.raises(TopicAuthorizationFailedError):
            await _read(as_a, topic)


async def test_a_service_writes_only_its_own_topics(kafka: KafkaProbe) -> None:
    placements = kafka.service_settings("placements")
    await _produce(placements, kafka.topics.internal("placements"))
    await _produce(placements, kafka.topics.dlq("placements"))
    for topic in (kafka.topics.internal("budget"), kafka.topics.dlq("budget"), kafka.topics.internal("ingress")):
        with pytest.raises(TopicAuthorizationFailedError):
            await _produce(placements, topic)
    # Only the ingress writes partner topics (what partners post over HTTP).
    p = new_ods("P")
    await kafka.create(partners=[p])
    with pytest.raises(TopicAuthorizationFailedError):
        await _produce(placements, kafka.topics.partner(p))
    await _produce(kafka.service_settings("ingress"), kafka.topics.partner(p))


async def test_only_ops_reads_dead_letters_and_services_read_only_what_they_consume(kafka: KafkaProbe) -> None:
    await kafka.send_raw(kafka.topics.dlq("budget"), b"a dead letter", key=b"05A")
    assert len(await _read(kafka.infra.kafka_settings(kafka.topics.namespace, user=OPS), kafka.topics.dlq("budget")))
    for service in SERVICES:
        with pytest.raises(TopicAuthorizationFailedError):
            await _read(kafka.service_settings(service), kafka.topics.dlq("budget"))
    # Notifications never sees partner data (NHS numbers): not the ingress topic, nor partner topics.
    await kafka.send_raw(kafka.topics.internal("ingress"), b"{}", key=b"k")
    with pytest.raises(TopicAuthorizationFailedError):
        await _read(kafka.service_settings("notifications"), kafka.topics.internal("ingress"))
    assert await _read(kafka.service_settings("budget"), kafka.topics.internal("ingress")) is not None


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "homeward.cli", "partner", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _partner_settings(printed: dict[str, str], namespace: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=printed["bootstrap.servers"],
        security_protocol=printed["security.protocol"],  # type: ignore[arg-type]
        sasl_mechanism=printed["sasl.mechanism"],  # type: ignore[arg-type]
        sasl_username=printed["sasl.username"],
        sasl_password=printed["sasl.password"],  # type: ignore[arg-type]
        topic_namespace=namespace,
    )


async def test_partner_add_rotate_and_remove_end_to_end(kafka: KafkaProbe, ingress: ServiceRuntime) -> None:
    ods = new_ods("N")
    ns = kafka.topics.namespace
    operator = {**kafka.infra.kafka_env(), "HOMEWARD_KAFKA_TOPIC_NAMESPACE": ns}

    added = _cli("add", ods, "--json", env=operator)
    assert added.returncode == 0, added.stderr
    first = json.loads(added.stdout)
    assert (first["topic"], first["sasl.username"]) == (kafka.topics.partner(ods), partner_principal(ods, ns))
    assert _cli("add", ods, env=operator).returncode == 1  # once only: rotate gives a new secret

    # The partner's first event, with the settings it was given, reaches the ingress's topic.
    partner = _partner_settings(first, ns)
    event = _availability(ods)
    key, value, headers = event.to_kafka()
    producer = AIOKafkaProducer(acks="all", **client_options(partner))
    await producer.start()
    try:
        await producer.send_and_wait(kafka.topics.partner(ods), value, key=key, headers=headers)
    finally:
        await producer.stop()

    def arrived(rs: list[Any]) -> bool:
        return any(parse_kafka(r.value, r.headers).id == event.id for r in rs)

    assert arrived(await kafka.read(kafka.topics.internal("ingress"), until=arrived))

    rotated = _cli("rotate", ods, "--json", env=operator)
    assert rotated.returncode == 0, rotated.stderr
    second = _partner_settings(json.loads(rotated.stdout), ns)
    assert second.sasl_password != partner.sasl_password

    async def old_secret_refused() -> bool:
        try:
            await _connects(partner)
        except (TimeoutError, KafkaConnectionError, KafkaError):
            return True
        return False

    assert await eventually(old_secret_refused, timeout=30)
    await _produce(second, kafka.topics.partner(ods), value)

    removed = _cli("remove", ods, env=operator)
    assert removed.returncode == 0, removed.stderr
    with pytest.raises((KafkaConnectionError, KafkaError, asyncio.TimeoutError)):
        await _connects(second)
    # Its topic and what it sent are kept.
    assert len(await kafka.read(kafka.topics.partner(ods), until=lambda rs: len(rs) >= 2)) == 2
    assert _cli("rotate", ods, env=operator).returncode == 1  # no identity left to rotate


def test_each_service_has_its_own_kafka_user(infra: Infra) -> None:
    users = set(infra.kafka_users)
    assert {service_principal(s) for s in SERVICES} | {OPS} <= users


def test_each_services_wiring_reads_exactly_what_its_grants_allow() -> None:
    from homeward.contracts.topics import CONSUMES

    from homeward.cli.runner import service_subscriptions

    for service, subscriptions in service_subscriptions().items():
        assert {s for sub in subscriptions for s in sub.services} == set(CONSUMES[service]), service
        assert any(sub.partners for sub in subscriptions) == (service == "ingress"), service
