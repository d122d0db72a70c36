"""Test support against the real infrastructure (a pytest plugin).

Infrastructure is found in this order: already running (environment variables),
else testcontainers where a Docker engine answers, else the native local stack,
started by the test session itself. A test that needs Kafka or PostgreSQL never
skips: if neither can be had, it fails with the reason.

Each test gets its own database and its own topic namespace, so tests cannot see
each other's data even though they share one broker and one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from homeward.contracts import Event

from .kafka import ensure_topics, make_admin
from .settings import KafkaSettings
from .topics import Topics


def pytest_configure(config: pytest.Config) -> None:
    """The session's keys (services refuse to start without them): the native stack's of this
    checkout (``.local/secrets/``), unless the environment sets them; random ones without a stack."""
    try:
        from homeward.devstack.secrets import ensure_secrets

        keys = ensure_secrets()
    except Exception:
        keys = {n: secrets.token_urlsafe(32) for n in ("HOMEWARD_PATIENT_REF_KEY", "HOMEWARD_NHS_NUMBER_KEY")}
    for name, value in keys.items():
        os.environ.setdefault(name, value)


@dataclass
class Infra:
    kafka_bootstrap: str
    postgres_admin_dsn: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    mail_web_url: str = "http://127.0.0.1:1080"
    origin: str = "environment"
    _containers: list[Any] = field(default_factory=list)

    def kafka_settings(self, namespace: str = "") -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.kafka_bootstrap, topic_namespace=namespace)


def _from_environment() -> Infra | None:
    kafka = os.environ.get("HOMEWARD_KAFKA_BOOTSTRAP_SERVERS")
    pg = os.environ.get("HOMEWARD_POSTGRES_ADMIN_DSN")
    if not (kafka and pg):
        return None
    return Infra(
        kafka_bootstrap=kafka,
        postgres_admin_dsn=pg,
        smtp_host=os.environ.get("HOMEWARD_SMTP_HOST", "127.0.0.1"),
        smtp_port=int(os.environ.get("HOMEWARD_SMTP_PORT", "1025")),
        mail_web_url=os.environ.get("HOMEWARD_MAIL_WEB_URL", "http://127.0.0.1:1080"),
        origin="environment",
    )


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


def _from_testcontainers() -> Infra:
    from testcontainers.kafka import KafkaContainer  # type: ignore[import-untyped]
    from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

    kafka = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    kafka.start()
    pg = PostgresContainer("postgres:15", username="postgres", password="postgres", dbname="postgres")
    pg.start()
    dsn = pg.get_connection_url().replace("postgresql+psycopg2://", "postgresql://")
    return Infra(kafka.get_bootstrap_server(), dsn, origin="testcontainers", _containers=[kafka, pg])


def _from_native_stack() -> Infra:
    from homeward.devstack import ensure_up

    info = ensure_up()
    return Infra(
        kafka_bootstrap=info.kafka_bootstrap,
        postgres_admin_dsn=info.postgres_admin_dsn,
        smtp_host=info.smtp_host,
        smtp_port=info.smtp_port,
        mail_web_url=info.mail_web_url,
        origin="native stack",
    )


def find_infra() -> Infra:
    found = _from_environment()
    if found:
        return found
    if _docker_answers():
        return _from_testcontainers()
    return _from_native_stack()


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    try:
        found = find_infra()
    except Exception as exc:  # never skip: a missing broker or database is a failure
        pytest.fail(f"Kafka/PostgreSQL for integration tests could not be started: {exc}", pytrace=False)
    yield found
    for c in found._containers:
        with contextlib.suppress(Exception):
            c.stop()


async def _admin(dsn: str) -> asyncpg.Connection:  # type: ignore[type-arg]
    return await asyncpg.connect(dsn)


def _dsn_for(admin_dsn: str, database: str) -> str:
    base, _, _ = admin_dsn.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
async def database(infra: Infra) -> AsyncIterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await _admin(infra.postgres_admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield _dsn_for(infra.postgres_admin_dsn, name)
    conn = await _admin(infra.postgres_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def new_namespace() -> str:
    return f"t{secrets.token_hex(4)}."


def new_ods(prefix: str = "X") -> str:
    """A random ODS-shaped partner code for tests (uppercase letters and digits)."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(4))


class KafkaProbe:
    """Produce raw records and read topics back, for tests against the real broker."""

    def __init__(self, infra: Infra, namespace: str) -> None:
        self.infra = infra
        self.topics = Topics(namespace)
        self.settings = infra.kafka_settings(namespace)
        self._producer: AIOKafkaProducer | None = None

    async def create(self, *, partners: Sequence[str] = (), extra: Sequence[str] = ()) -> None:
        specs = self.topics.declared(tuple(partners))
        from homeward.contracts.topics import TopicSpec

        specs += [TopicSpec(self.topics.namespace + t) for t in extra]
        await ensure_topics(self.settings, specs)
        # A created topic is in the controller's metadata before every broker answers for it;
        # wait until a fresh client lists them all, as a service's start-up check will.
        wanted = {t.name for t in specs}

        async def listed() -> bool:
            admin = make_admin(self.settings)
            await admin.start()
            try:
                return wanted <= set(await admin.list_topics())
            finally:
                await admin.close()

        await eventually(listed, timeout=30)

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.infra.kafka_bootstrap, acks="all", enable_idempotence=True
            )
            await self._producer.start()
        return self._producer

    async def send_raw(
        self, topic: str, value: bytes | None, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        p = await self.producer()
        await p.send_and_wait(topic, value=value, key=key, headers=list(headers))

    async def send(self, topic: str, event: Event[Any]) -> None:
        key, value, headers = event.to_kafka()
        await self.send_raw(topic, value, key=key, headers=headers)

    async def read(
        self,
        topic: str,
        *,
        until: Callable[[list[Any]], bool] | None = None,
        timeout: float = 30.0,
        settle: float = 0.0,
    ) -> list[Any]:
        """All records on ``topic`` from the beginning, waiting until ``until(records)`` holds.

        Returns what was read when the deadline passes, so a failing assertion shows it.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.infra.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            parts: set[int] = set()
            while not parts and time.monotonic() < deadline:
                cluster = await consumer._client.fetch_all_metadata()
                parts = cluster.partitions_for_topic(topic) or set()
                if not parts:
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout
            satisfied_at: float | None = None
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for recs in batch.values():
                    records.extend(recs)
                if until is None or until(records):
                    if satisfied_at is None:
                        satisfied_at = time.monotonic()
                    if time.monotonic() - satisfied_at >= settle:
                        break
                else:
                    satisfied_at = None
        finally:
            await consumer.stop()
        return records

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def delete_topics(self) -> None:
        """Delete this probe's namespace of topics, so that a long test run does not leave the
        broker thousands of partitions to carry (best effort: a failure here fails no test)."""
        admin = make_admin(self.settings)
        try:
            await admin.start()
            mine = [t for t in await admin.list_topics() if t.startswith(self.topics.namespace)]
            if mine:
                await admin.delete_topics(mine, timeout_ms=30000)
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


@pytest.fixture
async def kafka(infra: Infra) -> AsyncIterator[KafkaProbe]:
    """A probe with its own topic namespace; the declared topics are created."""
    probe = KafkaProbe(infra, new_namespace())
    await probe.create()
    yield probe
    await probe.close()
    await probe.delete_topics()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll an async or sync check until it returns a truthy value (no timing assertions)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    return last
