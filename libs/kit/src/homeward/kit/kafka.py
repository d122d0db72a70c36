"""Kafka clients built from settings: FastStream's KafkaBroker for consuming, an
idempotent acks=all aiokafka producer for the outbox relay and dead letters, and an
admin client. Security (SASL/SSL) comes from settings only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from homeward.contracts.topics import TopicSpec

from .settings import KafkaSettings


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=settings.ssl_cafile)


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security options understood by every aiokafka client."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    ctx = _ssl_context(settings)
    if ctx is not None:
        opts["ssl_context"] = ctx
    if settings.security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        opts["sasl_plain_username"] = settings.sasl_username
        opts["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return opts


def broker_security(settings: KafkaSettings) -> BaseSecurity | None:
    ctx = _ssl_context(settings)
    use_ssl = ctx is not None
    if not settings.security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=ctx, use_ssl=use_ssl) if use_ssl else None
    user = settings.sasl_username or ""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    mechanism = settings.sasl_mechanism or "PLAIN"
    cls = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[mechanism]
    return cls(username=user, password=password, ssl_context=ctx, use_ssl=use_ssl)  # type: ignore[abstract]


def instance_id(settings: KafkaSettings) -> str:
    """This replica's name: ``settings.instance``, else the host (a pod's name) and process id."""
    return settings.instance or f"{socket.gethostname()}-{os.getpid()}"


def consumer_client_id(settings: KafkaSettings, service: str) -> str:
    """The client id of a service's consumers. A consumer group orders its members by member id,
    which is the client id and a random suffix; every consumer group of one replica shares this
    client id, so the replicas come in the same order in each group, and the group's assignor
    (round robin over one topic) gives a replica the same partition numbers in each: budget's
    two groups are thus co-partitioned (homeward.contracts.topics.KEYED_BY)."""
    return f"{settings.client_id_prefix}-{service}-{instance_id(settings)}"


def make_broker(settings: KafkaSettings, service: str, **kwargs: Any) -> KafkaBroker:
    """The service's FastStream broker. Its own producer is idempotent with acks=all too.

    Its lines go to a plain logger that propagates to the root handler (JSON, redaction, the
    repeat filter: homeward.kit.logging), not to the coloured stdout handler FastStream would
    make for itself."""
    kwargs.setdefault("logger", logging.getLogger("homeward.faststream"))
    # Its lines about each batch received and processed are DEBUG: at national scale they would
    # be most of the log, and most of the logging's cost.
    kwargs.setdefault("log_level", logging.DEBUG)
    return KafkaBroker(
        settings.bootstrap_servers,
        security=broker_security(settings),
        client_id=consumer_client_id(settings, service),
        acks="all",
        enable_idempotence=True,
        metadata_max_age_ms=settings.metadata_max_age_ms,
        allow_auto_create_topics=False,
        description=f"Homeward {service} service",
        **kwargs,
    )


def make_producer(settings: KafkaSettings, service: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        client_id=f"{settings.client_id_prefix}-{service}-relay",
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        **client_options(settings),
    )


class RelayProducer:
    """The outbox relay's producer (idempotent, acks=all), which can be replaced by a new one.

    A record the broker refuses after the client took it (larger than its topic's
    ``max.message.bytes``, say) leaves aiokafka's idempotent producer out of step with the
    broker on that partition: every later record there fails with OutOfOrderSequenceNumber.
    Only a new producer, with a new producer id, gets past it: :meth:`restart`."""

    def __init__(self, settings: KafkaSettings, service: str) -> None:
        self._settings = settings
        self._service = service
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = make_producer(self._settings, self._service)
        await producer.start()
        self._producer = producer

    async def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        """Hand one record over; returns the future of its acknowledgement."""
        if self._producer is None:
            raise RuntimeError("the relay producer is not started")
        return await self._producer.send(topic, value=value, key=key, headers=headers)

    async def restart(self) -> None:
        """Start a new producer, then close the old one (its unacknowledged records fail)."""
        old = self._producer
        await self.start()
        if old is not None:
            await _close(old)

    async def stop(self) -> None:
        if self._producer is not None:
            await _close(self._producer)
            self._producer = None


async def _close(producer: AIOKafkaProducer, timeout_s: float = 5.0) -> None:
    # stop() flushes first, which waits for ever while Kafka is away
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), timeout=timeout_s)


def make_admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(client_id=f"{settings.client_id_prefix}-admin", **client_options(settings))


TOPIC_ALREADY_EXISTS = 36  # Kafka's error code: another client created it first, which is fine


class TopicsRefused(RuntimeError):
    """The broker answered a creation request with an error for some topics."""


async def create_missing_topics(admin: AIOKafkaAdminClient, topics: list[TopicSpec], replication: int = 1) -> list[str]:
    """With a started admin client: create the topics that do not exist yet and return their
    names. The broker's answer is read per topic (aiokafka does not raise on it), so a refusal,
    such as a replication factor above the broker count, raises :class:`TopicsRefused`."""
    existing = set(await admin.list_topics())
    await _align_retention(admin, [t for t in topics if t.name in existing and t.retention_ms is not None])
    new = [t for t in topics if t.name not in existing]
    if not new:
        return []
    response = await admin.create_topics(
        [
            NewTopic(
                t.name,
                num_partitions=t.partitions,
                replication_factor=replication,
                topic_configs={"retention.ms": str(t.retention_ms)} if t.retention_ms is not None else {},
            )
            for t in new
        ],
        timeout_ms=30000,
    )
    refused = [
        f"{entry[0]}: error {entry[1]} {entry[2] if len(entry) > 2 and entry[2] else ''}".strip()
        for entry in getattr(response, "topic_errors", [])
        if entry[1] not in (0, TOPIC_ALREADY_EXISTS)
    ]
    if refused:
        raise TopicsRefused("Kafka refused to create topics: " + "; ".join(refused))
    # A topic created just before may not be listed yet (metadata lags a creation): the broker
    # then answers that it exists, and it was not created now.
    existed = {entry[0] for entry in getattr(response, "topic_errors", []) if entry[1] == TOPIC_ALREADY_EXISTS}
    return [t.name for t in new if t.name not in existed]


async def _align_retention(admin: AIOKafkaAdminClient, topics: list[TopicSpec]) -> None:
    """Give existing topics the retention their spec declares (dead-letter topics made before
    they had one kept their records for ever)."""
    if not topics:
        return
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t.name) for t in topics])
    have: dict[str, str] = {}
    for response in described:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            for entry in entries:
                if entry[0] == "retention.ms":
                    have[name] = entry[1]
    stale = [t for t in topics if have.get(t.name) != str(t.retention_ms)]
    if stale:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t.name, {"retention.ms": str(t.retention_ms)}) for t in stale]
        )


async def ensure_topics(settings: KafkaSettings, topics: list[TopicSpec], replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = make_admin(settings)
    await admin.start()
    try:
        return await create_missing_topics(admin, topics, replication)
    finally:
        await admin.close()
