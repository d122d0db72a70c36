"""MailDev: an SMTP server that keeps every message, with a web UI and a REST API.

Installed with ``npm ci`` from the committed ``stack/mail/package.json`` and
``package-lock.json`` into ``.local/mail/node_modules`` (never into the repo), run
detached with its messages in ``.local/mail/store`` so they survive restarts.

REST API (MailDev 2.x): ``GET /email`` lists the messages as JSON, ``GET /email/<id>``
one message, ``DELETE /email/all`` empties the box, ``GET /healthz`` answers ``true``.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import StackConfig
from .errors import StackError
from .proc import (
    Log,
    arg_after,
    live_pid,
    port_open,
    port_taken_error,
    run,
    sha256_of,
    sibling_root,
    spawn_detached,
    tail,
    terminate,
)
from .status import ComponentStatus

_MARKER = ".homeward-installed"


def _entrypoint(cfg: StackConfig) -> str:
    return str(cfg.mail_dir / "node_modules" / "maildev" / "bin" / "maildev")


def _lock_hash(cfg: StackConfig) -> str:
    return sha256_of(cfg.mail_src / "package.json", cfg.mail_src / "package-lock.json")


def node_binary() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        raise StackError(
            "Node.js not found: the mail server (MailDev) runs on it", hint="apt-get install -y nodejs npm"
        )
    return node


def install(cfg: StackConfig, log: Log) -> None:
    """npm ci into .local/mail, unless the installed tree matches the committed lock file."""
    marker = cfg.mail_dir / _MARKER
    wanted = _lock_hash(cfg)
    if marker.is_file() and marker.read_text().strip() == wanted and (cfg.mail_dir / "node_modules").is_dir():
        return
    node_binary()
    npm = shutil.which("npm")
    if not npm:
        raise StackError("npm not found: it installs the mail server (MailDev)", hint="apt-get install -y npm")
    cfg.mail_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(cfg.mail_src / name, cfg.mail_dir / name)
    log("mail: installing MailDev with npm ci (first run only)...")
    argv = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--omit=dev"]
    result = run(argv, cwd=cfg.mail_dir, timeout=900)
    if result.returncode != 0:
        lines = [ln for ln in result.stdout.splitlines() if "Unknown user config" not in ln]
        raise StackError(
            f"npm could not install MailDev (exit code {result.returncode}):",
            details="\n".join(lines[-15:]),
            hint=f"check that the npm registry is reachable, then rerun (command: {' '.join(argv)} in {cfg.mail_dir})",
        )
    marker.write_text(wanted + "\n")


def running_pid(cfg: StackConfig) -> int | None:
    return live_pid(cfg.mail_pid_file, "maildev", str(cfg.mail_store))


def sibling(cfg: StackConfig) -> Path | None:
    """Another checkout whose MailDev already holds our SMTP port (same stack, shared)."""
    return sibling_root(cfg.smtp_port, cfg.root, lambda args: arg_after(args, "--mail-directory"), "/.local/mail/store")


def prepare(cfg: StackConfig, log: Log) -> None:
    if running_pid(cfg):
        return
    install(cfg, log)


def start(cfg: StackConfig, log: Log) -> bool:
    if running_pid(cfg):
        return False
    for port, what, var in (
        (cfg.smtp_port, "SMTP (mail server)", "HOMEWARD_STACK_SMTP_PORT"),
        (cfg.web_port, "mail web UI", "HOMEWARD_STACK_MAIL_WEB_PORT"),
    ):
        if port_open(cfg.host, port):
            raise port_taken_error(what, port, var)
    cfg.mail_store.mkdir(parents=True, exist_ok=True)
    argv = [
        node_binary(),
        _entrypoint(cfg),
        "--ip",
        cfg.host,
        "--web-ip",
        cfg.host,
        "--smtp",
        str(cfg.smtp_port),
        "--web",
        str(cfg.web_port),
        "--mail-directory",
        str(cfg.mail_store),
    ]
    pid = spawn_detached(argv, cfg.mail_log / "maildev.log", cwd=cfg.mail_dir)
    cfg.mail_pid_file.write_text(f"{pid}\n")
    log(f"mail: started MailDev (pid {pid}), log {cfg.mail_log / 'maildev.log'}")
    return True


def _healthy(cfg: StackConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{cfg.mail_web_url}/healthz", timeout=2) as resp:  # loopback only
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(cfg: StackConfig, log: Log, timeout: float = 30, *, shared: bool = False) -> None:
    """Wait until SMTP and the web API answer; ``shared``: it is another checkout's MailDev."""
    deadline = time.monotonic() + timeout
    while True:
        pid = running_pid(cfg)
        if pid is None and not shared:
            raise StackError(
                "MailDev exited while starting; last lines of its log:",
                details=tail(cfg.mail_log / "maildev.log", 20),
                hint=f"full log: {cfg.mail_log / 'maildev.log'}",
            )
        if port_open(cfg.host, cfg.smtp_port) and _healthy(cfg):
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"MailDev (pid {pid}) did not answer within {timeout:.0f}s:",
                details=tail(cfg.mail_log / "maildev.log", 20),
            )
        time.sleep(0.3)


def stop(cfg: StackConfig, log: Log) -> bool:
    pid = running_pid(cfg)
    if pid is None:
        cfg.mail_pid_file.unlink(missing_ok=True)
        return False
    log(f"mail: stopping MailDev (pid {pid})...")
    terminate(pid, timeout=15, log=log, name="MailDev")
    cfg.mail_pid_file.unlink(missing_ok=True)
    return True


def status(cfg: StackConfig) -> ComponentStatus:
    pid = running_pid(cfg)
    addr = f"{cfg.host}:{cfg.smtp_port} {cfg.mail_web_url}"
    listening = port_open(cfg.host, cfg.smtp_port)
    if pid and listening:
        return ComponentStatus("mail", "up", addr, pid)
    if pid:
        return ComponentStatus("mail", "starting", addr, pid, "process runs but SMTP does not answer")
    other = sibling(cfg) if listening else None
    if other:
        return ComponentStatus("mail", "up", addr, None, f"shared, from {other}")
    if listening:
        return ComponentStatus("mail", "foreign", addr, None, "port answers but is not this stack's MailDev")
    return ComponentStatus("mail", "down", addr)


def list_messages(web_url: str) -> list[dict[str, Any]]:
    """Every message MailDev holds (``GET /email``). MailDev answers with every message at once:
    after a national replay that takes seconds, more on a busy machine, hence the long timeout."""
    with urllib.request.urlopen(f"{web_url}/email", timeout=60) as resp:  # loopback only
        data = json.load(resp)
    return list(data)


def delete_messages(web_url: str, which: Callable[[dict[str, Any]], bool] | None = None) -> int:
    """Delete the messages MailDev holds (``DELETE /email/<id>``): all, or those ``which``
    picks. Returns how many were deleted."""
    doomed = [m for m in list_messages(web_url) if which is None or which(m)]
    for m in doomed:
        request = urllib.request.Request(f"{web_url}/email/{urllib.parse.quote(str(m['id']))}", method="DELETE")
        with urllib.request.urlopen(request, timeout=5) as resp:  # loopback only
            resp.read()
    return len(doomed)
