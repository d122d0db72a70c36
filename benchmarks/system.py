"""The whole system for a benchmark run: every service the main job starts
(``homeward.cli.runner.SERVICES``), as separate processes started by the runner's own
functions, on the shared Kafka and PostgreSQL but in a topic namespace, consumer groups and
databases of its own (as the end-to-end tests do), so a run never resets or disturbs anything
else on the stack. Staff emails go to an SMTP sink of the benchmark's own."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from homeward.contracts.access import service_principal
from homeward.devstack import StackInfo
from homeward.kit.kafka import ensure_topics
from homeward.kit.settings import KafkaSettings
from homeward.kit.topics import Topics
from homeward.testing import create_databases, drop_databases, free_port

from homeward.cli import runner
from homeward.scenario import Scenario

from .smtp_sink import SmtpSink


def bench_root() -> Path:
    return runner.repo_root() / ".local" / "bench"


def delete_namespace_topics(info: StackInfo, namespace: str) -> None:
    """Delete this run's topics (only those of its own namespace)."""
    from homeward.devstack import StackConfig, homeward_topics
    from homeward.devstack import kafka as stack_kafka

    cfg = StackConfig.load()
    doomed = homeward_topics(stack_kafka.list_topics(cfg), namespace)
    stack_kafka.delete_topics(cfg, doomed, timeout_s=120)


@dataclass
class BenchSystem:
    scenario: Scenario
    info: StackInfo
    sink: SmtpSink
    label: str = "e2e"
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    scheduler_s: float = 3600.0  # jobs do not run during the replay (as in the end-to-end tests)
    pids: dict[str, int] = field(default_factory=dict)
    services: tuple[str, ...] = field(default_factory=lambda: tuple(runner.SERVICES))

    def __post_init__(self) -> None:
        self.namespace = f"bench{self.token}."
        self.work = bench_root() / f"{self.label}-{self.token}"
        self.paths = runner.RunPaths(self.work)
        self.ports = {svc: free_port() for svc in self.services}
        self.db_names = {svc: f"bench_{self.token}_{svc}" for svc in self.services}
        base = self.info.postgres_admin_dsn.rpartition("/")[0]
        self.dsns = {svc: f"{base}/{name}" for svc, name in self.db_names.items()}
        self.settings: KafkaSettings = self.info.kafka_settings(namespace=self.namespace)  # the operator
        self.topics = Topics(self.namespace)

    @property
    def group_prefix(self) -> str:
        return self.namespace

    def group_service(self, group: str) -> str:
        """The service a consumer group belongs to (``<ns>homeward-<svc>[-n]``)."""
        name = group[len(self.group_prefix) :].removeprefix("homeward-")
        return name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name

    def env(self) -> dict[str, str]:
        stack_env = self.info.as_env()
        stack_env["HOMEWARD_SMTP_HOST"] = self.sink.host
        stack_env["HOMEWARD_SMTP_PORT"] = str(self.sink.port)
        as_of = self.scenario.config.as_of
        env = runner.service_env(stack_env, self.paths, as_of, scheduler_s=self.scheduler_s, ports=self.ports)
        env["HOMEWARD_KAFKA_TOPIC_NAMESPACE"] = self.namespace
        for svc in self.services:
            prefix = f"HOMEWARD_{svc.upper()}_"
            env[prefix + "DATABASE_URL"] = self.dsns[svc]
            env[prefix + "CONSUMER_GROUP"] = f"{self.group_prefix}homeward-{svc}"
            # Keep every outbox and inbox row: the latencies are traced through them.
            env[prefix + "OUTBOX_RETENTION_DAYS"] = "0"
            env[prefix + "INBOX_RETENTION_DAYS"] = "0"
        return env

    def prepare(self) -> None:
        """Reference data, recipients, databases and topics (the init step's work)."""
        self.paths.run.mkdir(parents=True, exist_ok=True)
        (self.paths.run / "reference.yaml").write_text(yaml.safe_dump(self.scenario.reference, sort_keys=False))
        (self.paths.run / "recipients.yaml").write_text(
            yaml.safe_dump(runner.recipients_for(self.scenario), sort_keys=False)
        )
        asyncio.run(create_databases(self.info.postgres_admin_dsn, list(self.db_names.values())))
        asyncio.run(ensure_topics(self.settings, self.topics.declared(tuple(self.scenario.partners))))
        # Each service runs as its own Kafka user, granted this namespace as the stack grants its own.
        from homeward.contracts.access import homeward_grants
        from homeward.kit.access import KafkaAccess

        KafkaAccess(self.settings).grant(homeward_grants(self.namespace))

    def start(self, timeout: float = 300.0) -> None:
        env = self.env()
        own = {svc: self.info.kafka_env(service_principal(svc)) for svc in self.services}
        self.pids = runner.start_services(env, self.paths, own)
        runner.wait_ready(self.paths, timeout=timeout, ports=self.ports)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "homeward.notifications",
                "recipients",
                "import",
                str(self.paths.run / "recipients.yaml"),
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
            cwd=runner.repo_root(),
        )

    def stop(self) -> None:
        runner.stop_services(self.work)

    def cleanup(self, *, keep_logs: bool = False) -> None:
        """Stop the services, drop the databases, delete the topics; keep the logs if asked
        (or if something failed, the caller's choice)."""
        self.stop()
        asyncio.run(drop_databases(self.info.postgres_admin_dsn, list(self.db_names.values())))
        delete_namespace_topics(self.info, self.namespace)
        if not keep_logs:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---- reading the services' databases ---------------------------------------------
    async def query(self, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsns[service])
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()
