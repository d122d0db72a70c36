"""Where the local stack lives and which ports it uses.

Everything is under ``<repo>/.local/`` (gitignored). Ports can be overridden with
environment variables, which must then be set for every ``homeward-stack``
command (``up``, ``status``, ``env``, ``down``) and for the test session alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import StackError

HOST = "127.0.0.1"

# environment variable -> default port
PORT_VARS: dict[str, int] = {
    "HOMEWARD_STACK_KAFKA_PORT": 19092,
    "HOMEWARD_STACK_KAFKA_CONTROLLER_PORT": 19093,
    "HOMEWARD_STACK_POSTGRES_PORT": 55432,
    "HOMEWARD_STACK_SMTP_PORT": 1025,
    "HOMEWARD_STACK_MAIL_WEB_PORT": 1080,
}
ROOT_VAR = "HOMEWARD_STACK_ROOT"
PARTNERS_VAR = "HOMEWARD_STACK_PARTNERS"
KAFKA_HEAP_VAR = "HOMEWARD_STACK_KAFKA_HEAP"
PG_BINDIR_VAR = "HOMEWARD_STACK_PG_BINDIR"

# Dev-only credentials: the stack listens on loopback only.
PG_SUPERUSER = "postgres"
PG_SUPERUSER_PASSWORD = "postgres"

_MARKER = Path("stack") / "kafka" / "pom.xml"


def _port(var: str) -> int:
    raw = os.environ.get(var)
    if raw is None or raw.strip() == "":
        return PORT_VARS[var]
    try:
        value = int(raw)
    except ValueError:
        raise StackError(f"{var}={raw!r} is not a port number", hint=f"unset {var} or give it a number") from None
    if not 0 < value < 65536:
        raise StackError(f"{var}={value} is out of range", hint="use a port between 1024 and 65535")
    return value


def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder holding ``stack/kafka/pom.xml``.

    Looked for from ``start`` (or ``$HOMEWARD_STACK_ROOT``), else from the current
    directory, else from this package's own location (editable workspace install).
    """
    if start is not None:
        candidates = [Path(start)]
    elif os.environ.get(ROOT_VAR):
        candidates = [Path(os.environ[ROOT_VAR])]
    else:
        candidates = [Path.cwd(), Path(__file__).resolve().parent]
    for candidate in candidates:
        candidate = candidate.resolve()
        for folder in (candidate, *candidate.parents):
            if (folder / _MARKER).is_file():
                return folder
    where = ", ".join(str(c) for c in candidates)
    raise StackError(
        f"cannot find the Homeward repository (a folder with {_MARKER}) from {where}",
        hint=f"run the command inside the repository, or set {ROOT_VAR}=/path/to/repo",
    )


def parse_partners(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(dict.fromkeys(p.strip().upper() for p in raw.split(",") if p.strip()))


@dataclass(frozen=True)
class StackConfig:
    root: Path
    kafka_port: int
    controller_port: int
    pg_port: int
    smtp_port: int
    web_port: int
    host: str = HOST
    kafka_heap: str = "1g"

    @classmethod
    def load(cls, root: Path | None = None) -> StackConfig:
        return cls(
            root=find_root(root),
            kafka_port=_port("HOMEWARD_STACK_KAFKA_PORT"),
            controller_port=_port("HOMEWARD_STACK_KAFKA_CONTROLLER_PORT"),
            pg_port=_port("HOMEWARD_STACK_POSTGRES_PORT"),
            smtp_port=_port("HOMEWARD_STACK_SMTP_PORT"),
            web_port=_port("HOMEWARD_STACK_MAIL_WEB_PORT"),
            kafka_heap=os.environ.get(KAFKA_HEAP_VAR, "1g"),
        )

    # ---- layout -----------------------------------------------------------------
    @property
    def local(self) -> Path:
        return self.root / ".local"

    @property
    def lock_file(self) -> Path:
        return self.local / "stack.lock"

    # kafka
    @property
    def kafka_pom(self) -> Path:
        return self.root / "stack" / "kafka" / "pom.xml"

    @property
    def kafka_dir(self) -> Path:
        return self.local / "kafka"

    @property
    def kafka_lib(self) -> Path:
        return self.kafka_dir / "lib"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_logs(self) -> Path:
        return self.kafka_dir / "logs"

    @property
    def kafka_config(self) -> Path:
        return self.kafka_dir / "config"

    @property
    def kafka_pid_file(self) -> Path:
        return self.kafka_dir / "kafka.pid"

    @property
    def kafka_credentials(self) -> Path:
        """The stack's Kafka users and their passwords (JSON, mode 0600), made at format time."""
        return self.kafka_dir / "credentials.json"

    # postgres
    @property
    def pg_dir(self) -> Path:
        return self.local / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "log"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "run"

    # mail
    @property
    def mail_src(self) -> Path:
        return self.root / "stack" / "mail"

    @property
    def mail_dir(self) -> Path:
        return self.local / "mail"

    @property
    def mail_store(self) -> Path:
        return self.mail_dir / "store"

    @property
    def mail_log(self) -> Path:
        return self.mail_dir / "log"

    @property
    def mail_pid_file(self) -> Path:
        return self.mail_dir / "maildev.pid"

    # ---- addresses --------------------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def pg_admin_dsn(self) -> str:
        return f"postgresql://{PG_SUPERUSER}:{PG_SUPERUSER_PASSWORD}@{self.host}:{self.pg_port}/postgres"

    def service_dsn(self, service: str) -> str:
        name = f"homeward_{service}"
        return f"postgresql://{name}:{name}@{self.host}:{self.pg_port}/{name}"

    @property
    def mail_web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"
