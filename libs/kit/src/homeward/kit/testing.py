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
import json
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
from homeward.contracts.access import ADMIN, homeward_grants, partner_grants, partner_principal, service_principal
from homeward.contracts.events import PlacementMade

from .kafka import client_options, ensure_topics, make_admin
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
    # Staff sign-in: the session signs tokens (staff_token) with the checkout's local key, or a
    # key of its own without a stack; services verify them against its JWKS.
    os.environ.update(_session_signer_env())


_SIGNER: Any = None


def _session_signer_env() -> dict[str, str]:
    global _SIGNER
    from pathlib import Path

    from .auth import LOCAL_SIGNING_KEY, LocalSigner, ensure_local_key, local_settings

    try:
        from homeward.devstack.config import StackConfig
        from homeward.devstack.secrets import ensure_auth, secrets_dir

        env = ensure_auth()
        folder = secrets_dir(StackConfig.load())
    except Exception:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="homeward-auth-"))
        ensure_local_key(folder)
        settings = local_settings(folder)
        assert settings is not None
        env = settings.as_env()
    _SIGNER = LocalSigner.from_file(folder / LOCAL_SIGNING_KEY)
    return env


def staff_signer() -> Any:
    """The session's :class:`~homeward.kit.auth.LocalSigner` (the key services trust in tests)."""
    if _SIGNER is None:
        os.environ.update(_session_signer_env())
    return _SIGNER


def staff_token(org: str, role: str, **claims: Any) -> str:
    """A token the services under test accept: ``org`` (ODS code) and ``role``; ``claims``
    override or add claims (``ttl=...``, ``sub=...``, ``aud="other"``...)."""
    return str(staff_signer().token(org=org, role=role, **claims))


def staff_headers(org: str, role: str, **claims: Any) -> dict[str, str]:
    """``Authorization: Bearer`` with :func:`staff_token`."""
    return {"Authorization": f"Bearer {staff_token(org, role, **claims)}"}


def ops_headers() -> dict[str, str]:
    """An operator's token (health, metrics, dead letters, admin jobs, overview figures)."""
    return staff_headers("HOMEWARD", "ops")


@dataclass
class Infra:
    kafka_bootstrap: str
    postgres_admin_dsn: str
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    mail_web_url: str = "http://127.0.0.1:1080"
    origin: str = "environment"
    # Kafka users and passwords (SASL/SCRAM-SHA-512); empty for a broker without authentication.
    kafka_users: dict[str, str] = field(default_factory=dict, repr=False)
    _containers: list[Any] = field(default_factory=list)

    @property
    def secured(self) -> bool:
        return bool(self.kafka_users)

    def kafka_settings(self, namespace: str = "", user: str = ADMIN, password: str | None = None) -> KafkaSettings:
        """Connection settings as ``user``: the admin (the operator) unless told otherwise."""
        if not self.secured:
            return KafkaSettings(bootstrap_servers=self.kafka_bootstrap, topic_namespace=namespace)
        secret = password if password is not None else self.kafka_users[user]
        return KafkaSettings.scram(self.kafka_bootstrap, user, secret, namespace)

    def kafka_env(self, user: str = ADMIN) -> dict[str, str]:
        """The HOMEWARD_KAFKA_* variables for a process connecting as ``user``."""
        return self.kafka_settings(user=user).as_env()

    def client_options(self, user: str = ADMIN) -> dict[str, Any]:
        """Options for an aiokafka client connecting as ``user``."""
        return client_options(self.kafka_settings(user=user))


def _from_environment() -> Infra | None:
    kafka = os.environ.get("HOMEWARD_KAFKA_BOOTSTRAP_SERVERS")
    pg = os.environ.get("HOMEWARD_POSTGRES_ADMIN_DSN")
    if not (kafka and pg):
        return None
    users: dict[str, str] = {}
    if os.environ.get("HOMEWARD_KAFKA_CREDENTIALS_FILE"):  # JSON {user: password}, the admin's included
        import json
        from pathlib import Path

        users = json.loads(Path(os.environ["HOMEWARD_KAFKA_CREDENTIALS_FILE"]).read_text())
    return Infra(
        kafka_bootstrap=kafka,
        postgres_admin_dsn=pg,
        kafka_users=users,
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
        kafka_users=dict(info.kafka_users),
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


async def create_databases(admin_dsn: str, names: Sequence[str]) -> None:
    conn = await _admin(admin_dsn)
    try:
        for n in names:
            await conn.execute(f'CREATE DATABASE "{n}"')
    finally:
        await conn.close()


async def drop_databases(admin_dsn: str, names: Sequence[str]) -> None:
    conn = await _admin(admin_dsn)
    try:
        for n in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def scratch_database(infra: Infra, prefix: str = "t") -> AsyncIterator[str]:
    """A fresh, empty database, dropped on leaving; yields its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    await create_databases(infra.postgres_admin_dsn, [name])
    try:
        yield _dsn_for(infra.postgres_admin_dsn, name)
    finally:
        await drop_databases(infra.postgres_admin_dsn, [name])


@pytest.fixture
async def database(infra: Infra) -> AsyncIterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    async with scratch_database(infra) as dsn:
        yield dsn


def service_tuning(kafka: KafkaProbe, service: str) -> dict[str, Any]:
    """Settings of a service under test: its own Kafka user in the probe's namespace, a free HTTP
    port, short batch and outbox waits, and scheduled jobs only when the test runs them."""
    return {
        "http_port": 0,
        "retry_backoff_s": 0.01,
        "batch_timeout_ms": 50,
        "outbox_poll_interval_s": 0.2,
        "scheduler_interval_s": 3600,
        "kafka": kafka.service_settings(service).model_copy(update={"metadata_max_age_ms": 1000}),
    }


def sample_placement(placement_id: str = "PLC-RYG-000001", **overrides: Any) -> PlacementMade:
    """A valid ``PlacementMade`` (an NHS number from the test range), with ``overrides``."""
    data = {
        "placement_id": placement_id,
        "nhs_number": "9990000018",
        "commissioner": "RYG",
        "provider": "8HA03",
        "provider_site": "8HA0301",
        "bed_type": "picu",
        "cohort": "mental_health",
        "age_band": "adult",
        "legal_status": "mha_s3",
        "programme": "mental_health",
        "start_date": "2026-01-05",
        "daily_rate_pence": 54500,
        **overrides,
    }
    return PlacementMade.model_validate_json(json.dumps(data))


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
        # The probe acts as the operator: it creates topics, injects records and reads them back.
        self.settings = infra.kafka_settings(namespace)
        self._producer: AIOKafkaProducer | None = None
        self._partners: dict[str, str] = {}

    def service_settings(self, service: str) -> KafkaSettings:
        """A service's own connection (its own Kafka user), in this probe's namespace."""
        return self.infra.kafka_settings(self.topics.namespace, user=service_principal(service))

    def _access(self) -> Any:
        from .access import KafkaAccess

        return KafkaAccess(self.settings)

    async def grant_services(self) -> None:
        """Let the services and ops use this namespace's topics, as the stack does for its own."""
        if self.infra.secured:
            await asyncio.to_thread(self._access().grant, homeward_grants(self.topics.namespace))

    async def revoke_services(self) -> None:
        if self.infra.secured:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._access().revoke, homeward_grants(self.topics.namespace))

    async def partner_settings(self, ods: str) -> KafkaSettings:
        """A partner's own connection: its user (namespaced) is made, with its grants, on first use."""
        from .access import new_password

        user = partner_principal(ods, self.topics.namespace)
        if user not in self._partners:
            password = new_password()
            access = self._access()
            await asyncio.to_thread(access.set_password, user, password)
            await asyncio.to_thread(access.grant, {user: partner_grants(ods, self.topics.namespace)})
            self._partners[user] = password
        return self.infra.kafka_settings(self.topics.namespace, user=user, password=self._partners[user])

    async def remove_partners(self) -> None:
        if not self._partners:
            return
        access = self._access()
        for user in self._partners:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(access.revoke_all, user)
                await asyncio.to_thread(access.delete_user, user)
        self._partners.clear()

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
            self._producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **client_options(self.settings))
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
            group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **client_options(self.settings)
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
    await probe.grant_services()
    yield probe
    await probe.close()
    await probe.remove_partners()
    await probe.revoke_services()
    await probe.delete_topics()


def kcat_config(settings: KafkaSettings, path: Any) -> Any:
    """Write ``settings``' connection as a librdkafka properties file (``kcat -F``); returns the path."""
    from pathlib import Path

    from .access import confluent_config

    conf = confluent_config(settings)
    keep = ("bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.username", "sasl.password")
    Path(path).write_text("".join(f"{k}={conf[k]}\n" for k in keep if k in conf))
    return path


def recent_librdkafka(folder: Any) -> dict[str, str]:
    """Environment that runs kcat on the librdkafka of the confluent-kafka wheel (2.6.1 or newer):
    Debian 12's kcat links librdkafka 2.0.2, whose SCRAM proof Kafka 4 rejects (fixed in 2.6.1)."""
    from pathlib import Path

    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    [lib] = libs.glob("librdkafka*.so*")
    target = Path(folder) / "librdkafka"
    target.mkdir(parents=True, exist_ok=True)
    link = target / "librdkafka.so.1"
    if not link.exists():
        link.symlink_to(lib)
    return {"LD_LIBRARY_PATH": str(target)}


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
