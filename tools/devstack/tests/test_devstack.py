"""The native stack, started for real through ensure_up() (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.server
import json
import smtplib
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError
from homeward.contracts.topics import SERVICES, TopicSpec, dead_letter_topic, declared_topics, internal_topic
from homeward.devstack import StackConfig, StackError, StackInfo, ensure_up, homeward_topics, stack, status
from homeward.devstack import kafka as stack_kafka
from homeward.devstack import mail as stack_mail
from homeward.devstack import postgres as stack_postgres


@pytest.fixture(scope="module")
def info() -> StackInfo:
    return ensure_up()


def _admin(info: StackInfo) -> dict[str, object]:
    """aiokafka options connecting as the stack's admin."""
    from homeward.kit.kafka import client_options

    return client_options(stack_kafka.client_settings(StackConfig.load()))


def _pids() -> list[int | None]:
    """Our pids (None for a part shared from another checkout on the same ports)."""
    parts = status()
    assert all(p.up for p in parts), parts
    return [p.pid for p in parts]


def test_env_names_every_service(info: StackInfo) -> None:
    env = info.as_env()
    assert env["HOMEWARD_KAFKA_BOOTSTRAP_SERVERS"] == info.kafka_bootstrap
    assert env["HOMEWARD_POSTGRES_ADMIN_DSN"] == info.postgres_admin_dsn
    assert env["HOMEWARD_SMTP_PORT"] == str(info.smtp_port)
    for service in SERVICES:
        assert env[f"HOMEWARD_{service.upper()}_DATABASE_URL"].endswith(f"/homeward_{service}")


def test_kafka_round_trip(info: StackInfo) -> None:
    # A topic of its own: a service on this stack would read anything written on a declared one.
    topic = f"devstack.probe.{uuid.uuid4().hex[:8]}"
    stack_kafka.ensure_topics(StackConfig.load(), [TopicSpec(topic, 3)])
    payload = uuid.uuid4().hex.encode()

    async def go() -> bytes:
        producer = AIOKafkaProducer(acks="all", **_admin(info))
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, payload, key=b"referral-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **_admin(info))
        await consumer.start()
        try:
            tp = TopicPartition(topic, meta.partition)
            consumer.assign([tp])
            consumer.seek(tp, meta.offset)
            msg = await asyncio.wait_for(consumer.getone(), 15)
            return bytes(msg.value or b"")
        finally:
            await consumer.stop()

    try:
        assert asyncio.run(go()) == payload
    finally:
        stack_kafka.delete_topics(StackConfig.load(), [topic])


def test_declared_topics_have_their_partitions_and_retention(info: StackInfo) -> None:
    async def go() -> tuple[set[str], dict[str, int], str]:
        admin = AIOKafkaAdminClient(**_admin(info))
        await admin.start()
        try:
            names = set(await admin.list_topics())
            described = await admin.describe_topics([internal_topic("budget"), dead_letter_topic("budget")])
            partitions = {t["topic"]: len(t["partitions"]) for t in described}
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, dead_letter_topic("budget"), {"retention.ms": None})]
            )
            entries = configs[0].resources[0][4]
            retention = next(e[1] for e in entries if e[0] == "retention.ms")
            return names, partitions, retention
        finally:
            await admin.close()

    names, partitions, retention = asyncio.run(go())
    assert {t.name for t in declared_topics()} <= names
    assert partitions == {internal_topic("budget"): 6, dead_letter_topic("budget"): 1}
    assert retention == str(14 * 24 * 3600 * 1000)  # dead letters hold identifiable data: 14 days


def test_kafka_refuses_to_auto_create_topics(info: StackInfo) -> None:
    topic = f"not.declared.{uuid.uuid4().hex[:8]}"

    async def go() -> list[str]:
        producer = AIOKafkaProducer(request_timeout_ms=2000, **_admin(info))
        await producer.start()
        try:
            # aiokafka gives up with one or the other depending on timing; either way no topic
            with pytest.raises((KafkaTimeoutError, UnknownTopicOrPartitionError)):
                await producer.send_and_wait(topic, b"x")
        finally:
            await producer.stop()
        admin = AIOKafkaAdminClient(**_admin(info))
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    assert topic not in asyncio.run(go())


def test_each_service_role_reaches_only_its_own_database(info: StackInfo) -> None:
    async def go() -> None:
        for service in SERVICES:
            own = info.database_url(service)
            conn = await asyncpg.connect(own)
            try:
                assert await conn.fetchval("SELECT current_database()") == f"homeward_{service}"
                await conn.execute("CREATE TABLE IF NOT EXISTS devstack_probe (id int)")  # owns its schema
            finally:
                await conn.close()
            other = next(s for s in SERVICES if s != service)
            base, _, _ = own.rpartition("/")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
                await asyncpg.connect(f"{base}/homeward_{other}")
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                info.database_url("budget").replace("homeward_budget:homeward_budget", "homeward_budget:wrong")
            )

    asyncio.run(go())


def test_smtp_message_shows_up_in_the_web_api(info: StackInfo) -> None:
    subject = f"devstack probe {uuid.uuid4().hex}"
    msg = EmailMessage()
    msg["From"] = "noreply@homeward.test"
    msg["To"] = "coordinator@example.test"
    msg["Subject"] = subject
    msg.set_content("Hello from the devstack test.")
    with smtplib.SMTP(info.smtp_host, info.smtp_port, timeout=10) as smtp:
        smtp.send_message(msg)

    deadline = time.monotonic() + 10
    found: list[dict[str, object]] = []
    while time.monotonic() < deadline and not found:
        with urllib.request.urlopen(info.mail_api_url, timeout=5) as resp:
            found = [m for m in json.load(resp) if m.get("subject") == subject]
        time.sleep(0.2)
    assert found, f"{subject!r} not listed by {info.mail_api_url}"
    assert found[0]["to"] == [{"address": "coordinator@example.test", "name": ""}]
    assert "Hello from the devstack test." in str(found[0]["text"])


def test_ensure_up_again_is_a_no_op(info: StackInfo) -> None:
    before = _pids()
    again = ensure_up()
    assert again == info
    assert _pids() == before


def test_homeward_topics_are_partner_internal_and_dead_letter_topics_of_one_namespace() -> None:
    names = [
        "partner.RX1.events",
        "homeward.placements.v1",
        "homeward.dlq.budget",
        "ns1.partner.RX1.events",
        "ns1.homeward.placements.v1",
        "someone.elses.topic",
        "__consumer_offsets",
        "partner.rx1.events",
    ]
    assert homeward_topics(names) == ["homeward.dlq.budget", "homeward.placements.v1", "partner.RX1.events"]
    assert homeward_topics(names, "ns1.") == ["ns1.homeward.placements.v1", "ns1.partner.RX1.events"]


def test_delete_topics_waits_until_the_broker_forgets_them(info: StackInfo) -> None:
    cfg = StackConfig.load()
    ns = f"reset{uuid.uuid4().hex[:6]}."
    specs = [TopicSpec(ns + t.name, t.partitions) for t in declared_topics(("RX1",))]
    stack_kafka.ensure_topics(cfg, specs)
    doomed = homeward_topics(stack_kafka.list_topics(cfg), ns)
    assert sorted(doomed) == sorted(s.name for s in specs)
    stack_kafka.delete_topics(cfg, doomed)
    assert not homeward_topics(stack_kafka.list_topics(cfg), ns)
    assert stack_kafka.ensure_topics(cfg, specs) == [s.name for s in specs]  # the same names, created again
    stack_kafka.delete_topics(cfg, [s.name for s in specs])


def test_recreate_databases_leaves_them_empty_and_owned(info: StackInfo) -> None:
    cfg = StackConfig.load()
    name = f"reset_{uuid.uuid4().hex[:8]}"
    owner = stack_postgres.role_name("referrals")
    dsn = info.postgres_admin_dsn.rpartition("/")[0] + f"/{name}"

    async def tables() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return [r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        finally:
            await conn.close()

    async def reset_while_connected() -> tuple[list[str], list[str]]:
        stack_postgres.recreate_databases(cfg, {name: owner})
        held = await asyncpg.connect(dsn)
        try:
            await held.execute("CREATE TABLE leftover (n int)")
            before = await tables()
            # An open connection (a service still running, say) must not stop the reset.
            await asyncio.to_thread(stack_postgres.recreate_databases, cfg, {name: owner})
            return before, await tables()
        finally:
            held.terminate()

    try:
        assert asyncio.run(reset_while_connected()) == (["leftover"], [])
    finally:
        asyncio.run(_drop(info.postgres_admin_dsn, name))


async def _drop(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        owner = await conn.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name)
        assert owner == stack_postgres.role_name("referrals")
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_delete_messages_removes_exactly_the_chosen_mail(info: StackInfo) -> None:
    # Only this test's own messages: a main job may be using the same mail server.
    tag = uuid.uuid4().hex
    with smtplib.SMTP(info.smtp_host, info.smtp_port, timeout=10) as smtp:
        for n in range(3):
            msg = EmailMessage()
            msg["From"] = "noreply@homeward.test"
            msg["To"] = "coordinator@example.test"
            msg["Subject"] = f"devstack reset probe {tag} {n}"
            msg.set_content("to be deleted" if n else "to be kept")
            smtp.send_message(msg)

    def mine() -> list[str]:
        return sorted(m["subject"] for m in stack_mail.list_messages(info.mail_web_url) if tag in m["subject"])

    deadline = time.monotonic() + 10
    while len(mine()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(mine()) == 3
    chosen = stack_mail.delete_messages(
        info.mail_web_url, lambda m: tag in m["subject"] and not m["subject"].endswith(" 0")
    )
    assert chosen == 2
    assert mine() == [f"devstack reset probe {tag} 0"]
    assert stack_mail.delete_messages(info.mail_web_url, lambda m: tag in m["subject"]) == 1
    assert mine() == []


# ---- reset: the mail is emptied without listing it, and nothing is destroyed until the checks pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _FakeMailDev(http.server.BaseHTTPRequestHandler):
    """Answers like MailDev's API and remembers what it was asked."""

    requests: list[str] = []
    delete_status = 200

    def _answer(self, status: int, body: bytes = b"true") -> None:
        self.requests.append(f"{self.command} {self.path}")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/healthz" else 500)

    def do_DELETE(self) -> None:
        self._answer(self.delete_status if self.path == "/email/all" else 500)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_maildev() -> Iterator[tuple[StackConfig, type[_FakeMailDev]]]:
    handler = type("Handler", (_FakeMailDev,), {"requests": [], "delete_status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = int(server.server_address[1])
    # The fake answers on both ports: the readiness check only connects to SMTP.
    cfg = dataclasses.replace(StackConfig.load(), smtp_port=port, web_port=port)
    try:
        yield cfg, handler
    finally:
        server.shutdown()
        server.server_close()


def test_clear_mail_deletes_all_at_once_and_never_lists(fake_maildev: tuple[StackConfig, type[_FakeMailDev]]) -> None:
    cfg, handler = fake_maildev
    assert stack.clear_mail(cfg, lambda _: None, shared=True) == "deleted"
    assert handler.requests[0] == "DELETE /email/all"
    assert not [r for r in handler.requests if r.startswith("GET /email")]


def test_clear_mail_of_another_checkout_fails_without_restarting_it(
    fake_maildev: tuple[StackConfig, type[_FakeMailDev]],
) -> None:
    cfg, handler = fake_maildev
    handler.delete_status = 500  # what MailDev answered after 11 s with 124,000 messages
    with pytest.raises(StackError, match="did not empty its store"):
        stack.clear_mail(cfg, lambda _: None, shared=True)
    assert handler.requests == ["DELETE /email/all"]


def _installed_maildev_modules(cfg: StackConfig) -> Path:
    """This checkout's MailDev installation or, when the stack is shared from another checkout
    (started there, so installed there), the one the running MailDev was started from."""
    own = cfg.mail_dir / "node_modules"
    if (own / "maildev").is_dir():
        return own
    other = stack_mail.sibling(cfg)  # the checkout whose MailDev serves our ports
    if other is not None and (other / ".local" / "mail" / "node_modules" / "maildev").is_dir():
        return other / ".local" / "mail" / "node_modules"
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            for arg in cmdline.read_bytes().split(b"\0"):
                # Any other running MailDev whose installation still exists.
                if arg.endswith(b"node_modules/maildev/bin/maildev") and Path(arg.decode()).is_file():
                    return Path(arg.decode()).parents[2]
    return own


@pytest.fixture
def private_maildev(tmp_path: Path, info: StackInfo) -> Iterator[StackConfig]:
    """A MailDev of this test's own (free ports, its own store), from the installed one."""
    shared_cfg = StackConfig.load()
    cfg = dataclasses.replace(shared_cfg, root=tmp_path, smtp_port=_free_port(), web_port=_free_port())
    cfg.mail_dir.mkdir(parents=True)
    (cfg.mail_dir / "node_modules").symlink_to(_installed_maildev_modules(shared_cfg))
    assert stack_mail.start(cfg, lambda _: None)
    try:
        stack_mail.wait_ready(cfg, lambda _: None)
        yield cfg
    finally:
        stack_mail.stop(cfg, lambda _: None)


def _send_mail(cfg: StackConfig, n: int) -> None:
    with smtplib.SMTP(cfg.host, cfg.smtp_port, timeout=10) as smtp:
        for i in range(n):
            msg = EmailMessage()
            msg["From"] = "noreply@homeward.test"
            msg["To"] = "coordinator@example.test"
            msg["Subject"] = f"reset probe {i}"
            msg.set_content("to be deleted")
            smtp.send_message(msg)
    deadline = time.monotonic() + 10
    while len(stack_mail.list_messages(cfg.mail_web_url)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(stack_mail.list_messages(cfg.mail_web_url)) == n


def _stored(cfg: StackConfig) -> list[Path]:
    return list(cfg.mail_store.glob("*.eml"))


def test_clear_mail_empties_a_real_maildev(private_maildev: StackConfig) -> None:
    cfg = private_maildev
    _send_mail(cfg, 5)
    pid = stack_mail.running_pid(cfg)
    assert stack.clear_mail(cfg, lambda _: None) == "deleted"
    assert stack_mail.list_messages(cfg.mail_web_url) == []
    assert stack_mail.running_pid(cfg) == pid
    deadline = time.monotonic() + 10
    while _stored(cfg) and time.monotonic() < deadline:  # the files go just after the answer
        time.sleep(0.1)
    assert not _stored(cfg)


def test_clear_mail_restarts_maildev_on_an_empty_store_when_delete_all_fails(
    private_maildev: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = private_maildev
    _send_mail(cfg, 3)
    pid = stack_mail.running_pid(cfg)
    assert len(_stored(cfg)) == 3

    def times_out(web_url: str, timeout: float) -> None:
        raise TimeoutError("timed out")  # as a MailDev busy with a huge mailbox would

    monkeypatch.setattr(stack, "_delete_all_mail", times_out)
    said: list[str] = []
    assert stack.clear_mail(cfg, said.append) == "restarted empty"
    assert any("restarting MailDev with an empty store" in s for s in said)
    assert stack_mail.running_pid(cfg) not in (None, pid)
    assert not _stored(cfg)
    assert stack_mail.list_messages(cfg.mail_web_url) == []
    _send_mail(cfg, 1)  # and it takes mail again


def test_clear_mail_starts_our_maildev_empty_if_it_died(private_maildev: StackConfig) -> None:
    cfg = private_maildev
    _send_mail(cfg, 2)
    stack_mail.stop(cfg, lambda _: None)  # as if it had crashed
    assert stack.clear_mail(cfg, lambda _: None, timeout=5) == "restarted empty"
    assert stack_mail.running_pid(cfg) is not None
    assert not _stored(cfg)
    assert stack_mail.list_messages(cfg.mail_web_url) == []


class _Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        cfg = StackConfig.load()
        monkeypatch.setattr(stack, "ensure_up", lambda root=None, log=None: StackInfo.from_config(cfg))
        monkeypatch.setattr(stack, "file_lock", lambda path, say: contextlib.nullcontext())
        for module, name in (
            (stack.kafka, "list_topics"),
            (stack.postgres, "provision"),
            (stack.mail, "wait_ready"),
            (stack, "clear_mail"),
            (stack.kafka, "delete_topics"),
            (stack.postgres, "recreate_databases"),
            (stack.kafka, "ensure_topics"),
        ):
            monkeypatch.setattr(module, name, self.step(name))

    def step(self, name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            self.calls.append(name)
            if name == self.fail:
                raise StackError(f"{name} failed")
            return [] if name in ("list_topics", "provision", "ensure_topics") else "deleted"

        return call


DESTRUCTIVE = {"clear_mail", "delete_topics", "recreate_databases"}


def test_reset_checks_first_then_mail_then_topics_and_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder(monkeypatch)
    stack.reset(log=lambda _: None)
    assert rec.calls == [
        "list_topics",
        "provision",
        "wait_ready",
        "clear_mail",
        "delete_topics",
        "recreate_databases",
        "ensure_topics",
    ]


@pytest.mark.parametrize("failing", ["list_topics", "provision", "wait_ready", "clear_mail"])
def test_reset_destroys_no_topic_or_database_when_an_earlier_step_fails(
    monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    rec = _Recorder(monkeypatch, fail=failing)
    with pytest.raises(StackError, match=f"{failing} failed"):
        stack.reset(log=lambda _: None)
    assert not {"delete_topics", "recreate_databases"} & set(rec.calls)
    if failing != "clear_mail":
        assert "clear_mail" not in rec.calls


def test_reset_refuses_a_bad_partner_code_before_touching_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = _Recorder(monkeypatch)
    with pytest.raises(StackError, match="not an ODS code"):
        stack.reset(partners=("not-ods",), log=lambda _: None)
    assert rec.calls == []


def test_status_prints_json_with_json_and_exits_3_while_a_part_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """``homeward-stack status --json`` (the --json convention of every Homeward CLI), on stand-in
    parts: the shared stack is only read by the test above."""
    import json

    from homeward.devstack import cli
    from homeward.devstack.status import ComponentStatus
    from typer.testing import CliRunner

    parts = [
        ComponentStatus("kafka", "up", "127.0.0.1:19092", 101),
        ComponentStatus("postgres", "down", "127.0.0.1:55432", None, "not started"),
    ]
    monkeypatch.setattr(cli.stack, "status", lambda: parts)
    done = CliRunner().invoke(cli.app, ["status", "--json"])
    assert done.exit_code == 3
    assert json.loads(done.stdout) == [
        {"part": "kafka", "state": "up", "up": True, "address": "127.0.0.1:19092", "pid": 101, "note": ""},
        {
            "part": "postgres",
            "state": "down",
            "up": False,
            "address": "127.0.0.1:55432",
            "pid": None,
            "note": "not started",
        },
    ]
    parts.pop()
    assert CliRunner().invoke(cli.app, ["status", "--json"]).exit_code == 0
