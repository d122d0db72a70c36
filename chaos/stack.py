"""The campaign's own Kafka, PostgreSQL and MailDev: it restarts Kafka and PostgreSQL and
stops SMTP, so it must never touch the shared stack others use.

The stack lives under ``<repo>/.local/chaos`` (its own ``.local`` inside, with a ``stack``
link to the repository's, which is how homeward-stack finds its Kafka build and mail
package), on ports of its own (Kafka 29092/29093, PostgreSQL 55433, SMTP 2025, web 2080 by
default). It is driven through homeward-stack's own functions, each given this stack's
:class:`StackConfig` and never the environment's: the shared stack's settings are not read
at all. The Kafka jars and the MailDev package are linked from an installation already on
the machine (this checkout's, else the shared stack's), so a run downloads nothing when the
shared stack is installed. Kafka's credentials are made for this stack when its storage is
formatted; homeward-stack reads a sibling checkout's credentials only for a broker serving
*our* port, and nothing else serves it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from homeward.devstack import StackConfig, StackInfo
from homeward.devstack import kafka as stack_kafka
from homeward.devstack import mail as stack_mail
from homeward.devstack import postgres as stack_pg
from homeward.devstack.errors import StackError
from homeward.devstack.proc import port_open
from homeward.devstack.stack import declared_topics

from homeward.cli import runner

Log = Callable[[str], None]

PORTS = {"kafka": 29092, "controller": 29093, "postgres": 55433, "smtp": 2025, "web": 2080}


def chaos_root() -> Path:
    return runner.repo_root() / ".local" / "chaos"


def _installed(relative: str, marker: str) -> Path | None:
    """An installation of ``relative`` (under a checkout's .local) that is complete: this
    checkout's, or the shared stack's (the checkout whose broker serves the default port)."""
    shared = StackConfig.load(runner.repo_root())
    roots = [shared.root]
    with contextlib.suppress(Exception):
        if (other := stack_kafka.sibling(shared)) is not None:
            roots.append(other)
    for root in roots:
        path = root / ".local" / relative
        if (path / marker).is_file():
            return path
    return None


def free_ports() -> dict[str, int]:
    """The default ports if none is taken, else free ones (another checkout's compose stack
    may publish 29092, say)."""
    from homeward.testing import free_port

    if not any(port_open("127.0.0.1", p) for p in PORTS.values()):
        return dict(PORTS)
    chosen: dict[str, int] = {}
    while len(set(chosen.values())) < len(PORTS):
        chosen = {name: free_port() for name in PORTS}
    return chosen


@dataclasses.dataclass
class PrivateStack:
    root: Path = dataclasses.field(default_factory=chaos_root)
    ports: dict[str, int] = dataclasses.field(default_factory=free_ports)
    log: Log = print

    def __post_init__(self) -> None:
        self.cfg = StackConfig(
            root=self.root,
            kafka_port=self.ports["kafka"],
            controller_port=self.ports["controller"],
            pg_port=self.ports["postgres"],
            smtp_port=self.ports["smtp"],
            web_port=self.ports["web"],
            kafka_heap="512m",
        )

    # ---- lifecycle ---------------------------------------------------------------
    def _layout(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        link = self.root / "stack"
        if not link.exists():
            link.symlink_to(runner.repo_root() / "stack")
        self.cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
        if not self.cfg.kafka_lib.exists() and (lib := _installed("kafka/lib", ".homeward-complete")) is not None:
            self.cfg.kafka_lib.symlink_to(lib)
        self.cfg.mail_dir.mkdir(parents=True, exist_ok=True)
        modules = self.cfg.mail_dir / "node_modules"
        if not modules.exists() and (mail := _installed("mail", ".homeward-installed")) is not None:
            modules.symlink_to(mail / "node_modules")
            for name in ("package.json", "package-lock.json", ".homeward-installed"):
                shutil.copyfile(mail / name, self.cfg.mail_dir / name)

    def up(self, partners: tuple[str, ...] = ()) -> StackInfo:
        """Start the three parts (formatting Kafka and PostgreSQL the first time), wait for
        them, make the service databases, the declared topics and the services' grants."""
        cfg = self.cfg
        self.down(wipe=True)  # whatever a run stopped half-way left behind: each run starts empty
        for port in self.ports.values():
            owned = (
                stack_kafka.running_pid(cfg) or stack_pg.running_pid(cfg) or stack_mail.running_pid(cfg)
            ) is not None
            if port_open(cfg.host, port) and not owned:
                raise StackError(
                    f"port {port} of the campaign's private stack is taken by something else",
                    hint="stop it, or give the campaign other ports (python -m chaos --help)",
                )
        self._layout()
        for part in (stack_kafka, stack_pg, stack_mail):
            part.prepare(cfg, self.log)
        stack_kafka.start(cfg, self.log)
        stack_pg.start(cfg, self.log)
        stack_mail.start(cfg, self.log)
        stack_mail.wait_ready(cfg, self.log)
        stack_pg.provision(cfg, self.log)
        stack_kafka.wait_ready(cfg, self.log, timeout=180)
        stack_kafka.ensure_topics(cfg, declared_topics(partners))
        stack_kafka.apply_acls(cfg)
        return self.info()

    def info(self) -> StackInfo:
        return StackInfo.from_config(self.cfg)

    def down(self, *, wipe: bool = True) -> None:
        """Stop every part; with ``wipe``, delete the stack's data (the next run formats again)."""
        for part in (stack_mail, stack_pg, stack_kafka):
            with contextlib.suppress(Exception):
                part.stop(self.cfg, self.log)
        if wipe:
            shutil.rmtree(self.cfg.local, ignore_errors=True)

    # ---- faults -------------------------------------------------------------------
    def stop_kafka(self) -> None:
        stack_kafka.stop(self.cfg, self.log)

    def start_kafka(self) -> None:
        stack_kafka.start(self.cfg, self.log)
        stack_kafka.wait_ready(self.cfg, self.log, timeout=180)

    def stop_postgres(self) -> None:
        stack_pg.stop(self.cfg, self.log)

    def start_postgres(self) -> None:
        stack_pg.start(self.cfg, self.log)

    def stop_smtp(self) -> None:
        stack_mail.stop(self.cfg, self.log)

    def start_smtp(self) -> None:
        stack_mail.start(self.cfg, self.log)
        stack_mail.wait_ready(self.cfg, self.log)
