"""PostgreSQL 15 from the Debian packages, its own cluster in .local/pg.

PostgreSQL refuses to run as root, so when we are root every server command runs as
the ``postgres`` OS user (``runuser -u postgres -- ...``); that user must be able to
reach ``.local/pg`` (see :func:`_make_reachable`). As any other user the server runs
as that user.

Dev/test only: ``fsync=off``, ``synchronous_commit=off`` and ``full_page_writes=off``
trade crash safety for speed; a power cut can corrupt this cluster (wipe it with
``homeward-stack down --wipe``). Credentials are fixed and public (see README).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
from pathlib import Path

from homeward.contracts.topics import SERVICES

from .config import PG_BINDIR_VAR, PG_SUPERUSER, PG_SUPERUSER_PASSWORD, StackConfig
from .errors import StackError
from .kafka import run_async
from .proc import Log, arg_after, live_pid, port_open, port_taken_error, run, sibling_root, tail
from .status import ComponentStatus

PREFERRED_MAJOR = "15"
OS_USER = "postgres"


# ---- binaries ----------------------------------------------------------------------
def _version_dirs() -> dict[str, Path]:
    found: dict[str, Path] = {}
    base = Path("/usr/lib/postgresql")
    if base.is_dir():
        for d in base.iterdir():
            if (d / "bin" / "pg_ctl").is_file() and (d / "bin" / "initdb").is_file():
                found[d.name] = d / "bin"
    return found


def _sort_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)) or (0,)


def find_bindir(cfg: StackConfig) -> Path | None:
    override = os.environ.get(PG_BINDIR_VAR)
    if override:
        path = Path(override)
        if not (path / "pg_ctl").is_file():
            raise StackError(f"{PG_BINDIR_VAR}={override} has no pg_ctl", hint=f"unset {PG_BINDIR_VAR} or fix it")
        return path
    versions = _version_dirs()
    made_by = cfg.pg_data / "PG_VERSION"
    if made_by.is_file():
        want = made_by.read_text().strip()
        if want in versions:
            return versions[want]
        if versions or shutil.which("pg_ctl"):
            raise StackError(
                f"{cfg.pg_data} was created by PostgreSQL {want}, whose server binaries are not installed",
                hint=f"apt-get install -y postgresql-{want}, or drop the local data: homeward-stack down --wipe",
            )
        return None
    if PREFERRED_MAJOR in versions:
        return versions[PREFERRED_MAJOR]
    if versions:
        return versions[max(versions, key=_sort_key)]
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    return None


def ensure_installed(cfg: StackConfig, log: Log) -> Path:
    """The PostgreSQL bin directory, installing the Debian packages if we are root."""
    bindir = find_bindir(cfg)
    if bindir:
        return bindir
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(
            "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and on PATH)",
            hint="install them: sudo apt-get install -y postgresql "
            f"(or set {PG_BINDIR_VAR} to a folder holding pg_ctl and initdb)",
        )
    log("postgres: not installed; running apt-get install -y postgresql (a few minutes)...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    result = run(argv, env=env, timeout=1200)
    if result.returncode != 0:
        run(["apt-get", "update"], env=env, timeout=600)
        result = run(argv, env=env, timeout=1200)
    bindir = find_bindir(cfg)
    if result.returncode != 0 or bindir is None:
        raise StackError(
            "apt-get could not install PostgreSQL:",
            details="\n".join(result.stdout.splitlines()[-15:]),
            hint="run `apt-get update && apt-get install -y postgresql` yourself and read its error",
        )
    return bindir


# ---- running as the postgres OS user ---------------------------------------------------
def _as_root() -> bool:
    return os.geteuid() == 0


def _prefix() -> list[str]:
    if not _as_root():
        return []
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise StackError(
            f"running as root but there is no '{OS_USER}' OS user to run PostgreSQL as (it refuses to run as root)",
            hint="apt-get install -y postgresql creates it; or `useradd --system postgres`",
        ) from None
    runuser = shutil.which("runuser")
    if not runuser:
        raise StackError("runuser not found (util-linux)", hint="apt-get install -y util-linux")
    return [runuser, "-u", OS_USER, "--"]


def _chown_tree(path: Path) -> None:
    if not _as_root():
        return
    pw = pwd.getpwnam(OS_USER)
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid)


def _make_reachable(target: Path, log: Log) -> None:
    """Let the postgres user traverse down to ``target`` (e.g. a repo under /root).

    Only the search (x) bit for others is added, on the folders that lack it; nothing
    becomes readable or listable. This is reported once when it happens.
    """
    if not _as_root():
        return
    check = [*_prefix(), "test", "-w", str(target)]
    if run(check).returncode == 0:
        return
    changed = []
    for folder in reversed(target.parents):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)
            changed.append(str(folder))
    if changed:
        log(f"postgres: added o+x (traverse only) to {', '.join(changed)} so the '{OS_USER}' user can reach {target}")
    if run(check).returncode != 0:
        raise StackError(
            f"the '{OS_USER}' OS user cannot write to {target}",
            hint=f"make the folders above it traversable (chmod o+x), or set HOMEWARD_STACK_ROOT to a checkout "
            f"somewhere {OS_USER} can reach",
        )


# ---- configuration ----------------------------------------------------------------------
def socket_dir(cfg: StackConfig) -> Path:
    """.local/pg/run, unless that path is too long for a unix socket (108 bytes)."""
    candidate = cfg.pg_socket_dir
    if len(f"{candidate}/.s.PGSQL.{cfg.pg_port}.lock") < 100:
        return candidate
    digest = hashlib.sha256(str(cfg.root).encode()).hexdigest()[:10]
    return Path("/tmp") / f"homeward-pg-{digest}"


def _conf(cfg: StackConfig) -> str:
    return f"""# Generated by homeward-stack on every `up`; included from postgresql.conf.
listen_addresses = '{cfg.host}'
port = {cfg.pg_port}
unix_socket_directories = '{socket_dir(cfg)}'
max_connections = 300
shared_buffers = 128MB
# dev/test only: no crash safety, much faster
fsync = off
synchronous_commit = off
full_page_writes = off
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
"""


def _write_conf(cfg: StackConfig) -> None:
    path = cfg.pg_data / "homeward.conf"
    path.write_text(_conf(cfg))
    sock = socket_dir(cfg)
    sock.mkdir(parents=True, exist_ok=True)
    if _as_root():
        pw = pwd.getpwnam(OS_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)


def _initdb(cfg: StackConfig, bindir: Path, log: Log) -> None:
    if (cfg.pg_data / "PG_VERSION").is_file():
        return
    log(f"postgres: initdb {cfg.pg_data}")
    cfg.pg_data.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.pg_data, 0o700)
    pwfile = cfg.pg_dir / ".pwfile"
    pwfile.write_text(PG_SUPERUSER_PASSWORD + "\n")
    os.chmod(pwfile, 0o600)
    _chown_tree(cfg.pg_dir)
    try:
        result = run(
            [
                *_prefix(),
                str(bindir / "initdb"),
                "-D",
                str(cfg.pg_data),
                "-U",
                PG_SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=cfg.pg_dir,
            timeout=300,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise StackError("initdb failed:", details=result.stdout[-3000:], hint=f"remove {cfg.pg_data} and retry")
    with open(cfg.pg_data / "postgresql.conf", "a") as f:
        f.write(
            "\n# homeward-stack settings (port, sockets, dev-only durability)\ninclude_if_exists = 'homeward.conf'\n"
        )


# ---- lifecycle -----------------------------------------------------------------------
def running_pid(cfg: StackConfig) -> int | None:
    return live_pid(cfg.pg_data / "postmaster.pid", "postgres", str(cfg.pg_data))


def sibling(cfg: StackConfig) -> Path | None:
    """Another checkout whose PostgreSQL already holds our port (same stack, shared)."""
    return sibling_root(cfg.pg_port, cfg.root, lambda args: arg_after(args, "-D"), "/.local/pg/data")


def prepare(cfg: StackConfig, log: Log) -> None:
    if running_pid(cfg):
        return
    bindir = ensure_installed(cfg, log)
    cfg.pg_dir.mkdir(parents=True, exist_ok=True)
    cfg.pg_log.mkdir(parents=True, exist_ok=True)
    if _as_root():
        _prefix()  # fails clearly if there is no postgres OS user
        pw = pwd.getpwnam(OS_USER)
        for d in (cfg.pg_dir, cfg.pg_log):
            os.chown(d, pw.pw_uid, pw.pw_gid)
    _make_reachable(cfg.pg_dir, log)
    _initdb(cfg, bindir, log)


def start(cfg: StackConfig, log: Log) -> bool:
    if running_pid(cfg):
        return False
    if port_open(cfg.host, cfg.pg_port):
        raise port_taken_error("PostgreSQL", cfg.pg_port, "HOMEWARD_STACK_POSTGRES_PORT")
    bindir = ensure_installed(cfg, log)
    _write_conf(cfg)
    _chown_tree(cfg.pg_log)
    logfile = cfg.pg_log / "postgresql.log"
    result = run(
        [*_prefix(), str(bindir / "pg_ctl"), "-D", str(cfg.pg_data), "-l", str(logfile), "-w", "-t", "60", "start"],
        cwd=cfg.pg_dir,
        timeout=120,
    )
    if result.returncode != 0:
        raise StackError(
            "PostgreSQL did not start:",
            details=(result.stdout.strip() + "\n" + tail(logfile, 15)).strip(),
            hint=f"full log: {logfile}",
        )
    log(f"postgres: started (pid {running_pid(cfg)}), log {logfile}")
    return True


def stop(cfg: StackConfig, log: Log) -> bool:
    if not running_pid(cfg):
        return False
    bindir = find_bindir(cfg)
    log("postgres: stopping (pg_ctl stop -m fast)...")
    if bindir is not None:
        result = run(
            [*_prefix(), str(bindir / "pg_ctl"), "-D", str(cfg.pg_data), "stop", "-m", "fast", "-w", "-t", "60"],
            cwd=cfg.pg_dir,
            timeout=120,
        )
        if result.returncode == 0:
            return True
        log(f"postgres: pg_ctl stop failed: {result.stdout.strip()}")
    pid = running_pid(cfg)
    if pid:
        from .proc import terminate

        terminate(pid, timeout=30, log=log, name="PostgreSQL")
    return True


def status(cfg: StackConfig) -> ComponentStatus:
    pid = running_pid(cfg)
    addr = f"{cfg.host}:{cfg.pg_port}"
    listening = port_open(cfg.host, cfg.pg_port)
    if pid and listening:
        return ComponentStatus("postgres", "up", addr, pid)
    if pid:
        return ComponentStatus("postgres", "starting", addr, pid, "process runs but the port does not answer")
    other = sibling(cfg) if listening else None
    if other:
        return ComponentStatus("postgres", "up", addr, None, f"shared, from {other}")
    if listening:
        return ComponentStatus("postgres", "foreign", addr, None, "port answers but is not this stack's server")
    return ComponentStatus("postgres", "down", addr)


# ---- databases ----------------------------------------------------------------------------
def role_name(service: str) -> str:
    return f"homeward_{service}"


async def _provision(cfg: StackConfig, services: tuple[str, ...]) -> list[str]:
    import asyncpg

    created: list[str] = []
    conn = await asyncpg.connect(cfg.pg_admin_dsn, timeout=15)
    try:
        for service in services:
            name = role_name(service)
            assert re.fullmatch(r"[a-z_][a-z0-9_]*", name), name
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", name):
                await conn.execute(
                    f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{name}' NOSUPERUSER NOCREATEDB NOCREATEROLE"
                )
                created.append(f"role {name}")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
                created.append(f"database {name}")
            # Only the owner (and superusers) may connect: no other service's role.
            await conn.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
    finally:
        await conn.close()
    return created


async def _recreate(cfg: StackConfig, databases: dict[str, str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(cfg.pg_admin_dsn, timeout=15)
    try:
        for name, owner in databases.items():
            assert re.fullmatch(r"[a-z_][a-z0-9_]*", name) and re.fullmatch(r"[a-z_][a-z0-9_]*", owner), name
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
            await conn.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
    finally:
        await conn.close()


def recreate_databases(cfg: StackConfig, databases: dict[str, str]) -> None:
    """Drop each database (closing its connections) and create it empty: name -> owner role."""
    try:
        run_async(_recreate(cfg, databases))
    except Exception as exc:
        raise StackError(f"could not recreate {', '.join(databases)} through {cfg.pg_admin_dsn}: {exc}") from exc


def provision(cfg: StackConfig, log: Log, services: tuple[str, ...] = SERVICES) -> list[str]:
    try:
        created = run_async(_provision(cfg, services))
    except StackError:
        raise
    except Exception as exc:
        raise StackError(
            f"could not create the service databases through {cfg.pg_admin_dsn}: {exc}",
            hint=f"see {cfg.pg_log / 'postgresql.log'}",
        ) from exc
    if created:
        log(f"postgres: created {', '.join(created)}")
    return created
