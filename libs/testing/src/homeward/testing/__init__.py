"""Test support against the real infrastructure (a pytest plugin): the homeward-testing package.

It sits above the kit and the native stack (homeward-devstack) and depends on both; neither the
kit nor any service imports it. The root pyproject.toml loads it with ``-p homeward.testing``.

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
from homeward.kit.kafka import client_options, ensure_topics, make_admin
from homeward.kit.settings import KafkaSettings
from homeward.kit.topics import Topics


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

    from homeward.kit.auth import LOCAL_SIGNING_KEY, LocalSigner, ensure_local_key, local_settings

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
    """A Docker-compatible engine answers where the Docker SDK finds one: DOCKER_HOST (podman's
    socket, ``podman system service``), else the default /var/run/docker.sock."""
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


# ---- testcontainers: the same images as docker-compose.yml, overridable the same way --------
# (HOMEWARD_KAFKA_IMAGE, HOMEWARD_POSTGRES_IMAGE, HOMEWARD_MAIL_IMAGE; CI sets them to the local
# stand-ins of containers/). Host ports are free ones unless HOMEWARD_TC_*_PORT names them, so
# the containers never take the native stack's.
TC_KAFKA_IMAGE = "apache/kafka:4.1.1"
TC_POSTGRES_IMAGE = "postgres:15"
TC_MAIL_IMAGE = "maildev/maildev:2.2.1"
TC_START_TIMEOUT_S = 180.0


def _tc_port(variable: str) -> int:
    return int(os.environ.get(variable) or free_port())


def _tc_wait(check: Callable[[], bool], what: str, container: Any, timeout: float = TC_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(1)
    logs = b""
    with contextlib.suppress(Exception):
        out, err = container.get_logs()
        logs = (out or b"") + (err or b"")
    tail = logs.decode(errors="replace")[-3000:]
    raise RuntimeError(f"{what} did not start in {timeout:.0f}s ({last}); its log ends:\n{tail}")


def _tc_run(coro: Any) -> Any:
    """Run a coroutine to the end from sync code, even where an event loop is running."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _tc_kafka(containers: list[Any]) -> tuple[str, dict[str, str]]:
    """A one-node KRaft broker configured as docker-compose.yml's: SCRAM-SHA-512 for clients on
    HOST (the bootstrap address tests use), the admin (PLAIN) on BROKER, ACLs enforced. Once
    it answers, the admin makes the SCRAM users the native stack has (admin, ops, one per
    service) and grants them homeward_grants(), as ``homeward-stack up`` does."""
    from homeward.contracts.access import OPS
    from homeward.contracts.topics import SERVICES
    from homeward.kit.access import KafkaAccess, new_password
    from testcontainers.core.container import DockerContainer  # type: ignore[import-untyped]

    host, broker = _tc_port("HOMEWARD_TC_KAFKA_PORT"), _tc_port("HOMEWARD_TC_KAFKA_ADMIN_PORT")
    users = {u: new_password() for u in (ADMIN, OPS, *(service_principal(s) for s in SERVICES))}
    admin_jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{ADMIN}" password="{users[ADMIN]}" user_{ADMIN}="{users[ADMIN]}";'
    )
    scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    env = {
        "CLUSTER_ID": "MaOuDpsGX4KarxdTlHzcrw",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        # Each advertised port is the host's and the container's: the same address works inside.
        "KAFKA_LISTENERS": f"HOST://:{host},BROKER://:{broker},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"HOST://127.0.0.1:{host},BROKER://127.0.0.1:{broker}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "HOST:SASL_PLAINTEXT,BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_SASL_ENABLED_MECHANISMS": "SCRAM-SHA-512",
        "KAFKA_LISTENER_NAME_HOST_SCRAM___SHA___512_SASL_JAAS_CONFIG": scram_jaas,
        "KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL": "PLAIN",
        "KAFKA_LISTENER_NAME_BROKER_SASL_ENABLED_MECHANISMS": "PLAIN",
        "KAFKA_LISTENER_NAME_BROKER_PLAIN_SASL_JAAS_CONFIG": admin_jaas,
        "KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL": "PLAIN",
        "KAFKA_LISTENER_NAME_CONTROLLER_SASL_ENABLED_MECHANISMS": "PLAIN",
        "KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG": admin_jaas,
        "KAFKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "false",
        "KAFKA_SUPER_USERS": f"User:{ADMIN}",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_DELETE_TOPIC_ENABLE": "true",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "6",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
    }
    container = DockerContainer(os.environ.get("HOMEWARD_KAFKA_IMAGE") or TC_KAFKA_IMAGE)
    for k, v in env.items():
        container = container.with_env(k, v)
    container = container.with_bind_ports(host, host).with_bind_ports(broker, broker)
    container.start()
    containers.append(container)
    admin = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{broker}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username=ADMIN,
        sasl_password=users[ADMIN],  # type: ignore[arg-type]
    )
    access = KafkaAccess(admin)

    def admin_answers() -> bool:
        return bool(access.users([ADMIN]) is not None)

    _tc_wait(admin_answers, "the Kafka container", container)
    for user, password in users.items():
        access.set_password(user, password)
    access.grant(homeward_grants())
    bootstrap = f"127.0.0.1:{host}"

    async def scram_answers() -> bool:
        settings = KafkaSettings.scram(bootstrap, ADMIN, users[ADMIN])
        client = make_admin(settings)
        await client.start()
        try:
            await client.list_topics()
        finally:
            await client.close()
        return True

    _tc_wait(lambda: _tc_run(scram_answers()), "SCRAM sign-in to the Kafka container", container)
    return bootstrap, users


def _tc_postgres(containers: list[Any]) -> str:
    from testcontainers.core.container import DockerContainer

    port, password = _tc_port("HOMEWARD_TC_POSTGRES_PORT"), secrets.token_urlsafe(16)
    container = (
        DockerContainer(os.environ.get("HOMEWARD_POSTGRES_IMAGE") or TC_POSTGRES_IMAGE)
        .with_env("POSTGRES_USER", "postgres")
        .with_env("POSTGRES_PASSWORD", password)
        .with_env("POSTGRES_DB", "postgres")
        .with_bind_ports(5432, port)
    )
    container.start()
    containers.append(container)
    dsn = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"

    async def answers() -> bool:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close()
        return True

    _tc_wait(lambda: _tc_run(answers()), "the PostgreSQL container", container)
    return dsn


def _tc_mail(containers: list[Any]) -> tuple[int, str]:
    import urllib.request

    from testcontainers.core.container import DockerContainer

    smtp, web = _tc_port("HOMEWARD_TC_SMTP_PORT"), _tc_port("HOMEWARD_TC_MAIL_WEB_PORT")
    container = (
        DockerContainer(os.environ.get("HOMEWARD_MAIL_IMAGE") or TC_MAIL_IMAGE)
        .with_bind_ports(1025, smtp)
        .with_bind_ports(1080, web)
    )
    container.start()
    containers.append(container)
    url = f"http://127.0.0.1:{web}"

    def answers() -> bool:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
            return bool(r.status == 200)

    _tc_wait(answers, "the mail catcher container", container)
    return smtp, url


def _from_testcontainers() -> Infra:
    """Kafka (SASL/SCRAM and ACLs, as the native stack), PostgreSQL and a mail catcher as
    generic containers. With podman: DOCKER_HOST=unix://<podman socket> and
    TESTCONTAINERS_RYUK_DISABLED=true (the containers are stopped by the infra fixture)."""
    containers: list[Any] = []
    try:
        bootstrap, users = _tc_kafka(containers)
        dsn = _tc_postgres(containers)
        smtp_port, mail_url = _tc_mail(containers)
    except BaseException:
        for c in containers:
            with contextlib.suppress(Exception):
                c.stop()
        raise
    return Infra(
        kafka_bootstrap=bootstrap,
        postgres_admin_dsn=dsn,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        mail_web_url=mail_url,
        origin="testcontainers",
        kafka_users=users,
        _containers=containers,
    )


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
    """The first of: the environment's (HOMEWARD_KAFKA_BOOTSTRAP_SERVERS and
    HOMEWARD_POSTGRES_ADMIN_DSN), testcontainers (a Docker-compatible engine answers), the native
    stack. HOMEWARD_TEST_INFRA=environment|testcontainers|native insists on one (and fails
    without it), as CI does for its testcontainers run."""
    wanted = os.environ.get("HOMEWARD_TEST_INFRA", "")
    if wanted not in ("", "environment", "testcontainers", "native"):
        raise RuntimeError(f"HOMEWARD_TEST_INFRA={wanted!r}: use environment, testcontainers or native")
    if wanted in ("", "environment"):
        found = _from_environment()
        if found:
            return found
        if wanted:
            raise RuntimeError(
                "HOMEWARD_TEST_INFRA=environment, but HOMEWARD_KAFKA_BOOTSTRAP_SERVERS "
                "or HOMEWARD_POSTGRES_ADMIN_DSN is unset"
            )
    if wanted in ("", "testcontainers"):
        if _docker_answers():
            return _from_testcontainers()
        if wanted:
            raise RuntimeError(
                "HOMEWARD_TEST_INFRA=testcontainers, but no Docker-compatible engine answers "
                f"(DOCKER_HOST={os.environ.get('DOCKER_HOST', '(unset)')})"
            )
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
        from homeward.kit.access import KafkaAccess

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
        from homeward.kit.access import new_password

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

    from homeward.kit.access import confluent_config

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
