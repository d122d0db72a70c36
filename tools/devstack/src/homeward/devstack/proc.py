"""Process, port and file helpers shared by the three components."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .errors import StackError

Log = Callable[[str], None]


# ---- processes -------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie child of ours is reaped and counts as dead)."""
    if pid <= 0:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().splitlines()[0].strip()
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def live_pid(path: Path, *must_contain: str) -> int | None:
    """The pid in ``path`` if that process runs and its command line has every marker."""
    pid = read_pid(path)
    if pid is None or not pid_alive(pid):
        return None
    line = cmdline(pid)
    if line and not all(m in line for m in must_contain):
        return None  # pid reused by an unrelated process
    return pid


def spawn_detached(argv: Sequence[str], log_path: Path, *, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start a process in its own session (it outlives us), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        out.write(f"\n---- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(  # argv built by us, no shell
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def terminate(pid: int, *, timeout: float, log: Log, name: str) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.2)
    log(f"{name} (pid {pid}) did not stop within {timeout:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)


def tail(path: Path, lines: int = 25) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64_000))
            data = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


# ---- ports ----------------------------------------------------------------------
def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 10 or cols[3] != "0A":  # 0A = LISTEN
                continue
            if int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def _summary(pid: int) -> str:
    """A short command line: the program and its last arguments (a JVM's are long)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    args = [a for a in args if a]
    if len(args) <= 5:
        return " ".join(args)
    return f"{args[0]} ... {' '.join(args[-3:])}"


def port_owner_pid(port: int) -> int | None:
    """The pid listening on ``port`` (None if nothing listens or it cannot be seen)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return int(proc.name)
        except OSError:
            continue
    return None


def port_owner(port: int) -> str | None:
    """'pid N: command' of the process listening on ``port``, if it can be found."""
    pid = port_owner_pid(port)
    if pid is not None:
        return f"pid {pid}: {_summary(pid)}"
    return "a process this user cannot inspect" if _listening_inodes(port) else None


def cmdline_args(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return []
    return [a for a in raw.split("\0") if a]


def arg_after(args: list[str], flag: str) -> str | None:
    try:
        return args[args.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def sibling_root(port: int, own_root: Path, find: Callable[[list[str]], str | None], suffix: str) -> Path | None:
    """The checkout whose homeward-stack process listens on ``port``, if not ``own_root``.

    ``find`` picks the state path out of that process's arguments; it must end with
    ``suffix`` (e.g. ``/.local/pg/data``) for the process to count as a homeward stack.
    """
    pid = port_owner_pid(port)
    if pid is None:
        return None
    path = find(cmdline_args(pid))
    if not path or not path.endswith(suffix):
        return None
    root = Path(path[: -len(suffix)] or "/")
    return None if root == own_root else root


def port_taken_error(what: str, port: int, var: str) -> StackError:
    owner = port_owner(port)
    return StackError(
        f"port {port} ({what}) is already in use by another process" + (f" ({owner})" if owner else ""),
        hint=f"stop that process, or choose another port: export {var}=<free port> "
        "(set it for every homeward-stack command and the tests)",
    )


# ---- files ----------------------------------------------------------------------
def sha256_of(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path, log: Log) -> Iterator[None]:
    """Serialise ``up``/``down`` between processes (e.g. parallel test sessions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another homeward-stack command is running; waiting for it...")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run to completion, output captured (stdout and stderr merged)."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        start_new_session=True,
        check=False,
    )
