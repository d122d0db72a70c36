"""asyncpg pools and the migrations runner.

Migrations are plain SQL files named ``NNNN_description.sql``. The kit's own tables
(inbox, outbox) are applied first, then the service's. Each file runs in its own
transaction; an advisory lock serialises replicas starting at once; a changed file
that was already applied is an error, never silently re-run. docs/decisions.md says
why this is not yoyo or alembic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .logging import get_logger

KIT_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x486F6D65  # "Home"

log = get_logger(__name__)


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def load_migrations(component: str, directory: Path) -> list[Migration]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        head, _, rest = path.stem.partition("_")
        if not head.isdigit():
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql")
        out.append(Migration(component, int(head), rest, path.read_text()))
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return out


async def migrate(dsn: str, service: str, service_dir: Path | None) -> list[Migration]:
    """Apply pending kit and service migrations; return those applied."""
    plan = load_migrations("kit", KIT_MIGRATIONS)
    if service_dir is not None:
        plan += load_migrations(service, service_dir)
    conn = await asyncpg.connect(dsn)
    applied: list[Migration] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   component text NOT NULL, version int NOT NULL, name text NOT NULL,
                   checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (component, version))"""
        )
        done = {
            (r["component"], r["version"]): r["checksum"]
            for r in await conn.fetch("SELECT component, version, checksum FROM schema_migrations")
        }
        for m in plan:
            seen = done.get((m.component, m.version))
            if seen is not None:
                if seen != m.checksum:
                    raise MigrationError(
                        f"migration {m.component}/{m.version:04d}_{m.name} changed after it was applied; "
                        "add a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (component, version, name, checksum) VALUES ($1,$2,$3,$4)",
                    m.component,
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied.append(m)
            log.info("migration applied", component=m.component, version=m.version, migration=m.name)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        finally:
            await conn.close()
    return applied


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=60)
    assert pool is not None
    return pool


def service_migrations(package_file: str) -> Path:
    """A service's SQL migrations, given any module's ``__file__`` in ``homeward.<service>``:
    inside the installed wheel (``homeward/<service>/migrations``, put there by hatch's
    force-include) or, in a source checkout, ``services/<service>/migrations``."""
    here = Path(package_file).resolve()
    package = next(p for p in [here, *here.parents] if p.parent.name == "homeward")
    packaged = package / "migrations"
    if packaged.is_dir():
        return packaged
    source = package.parents[2] / "migrations"  # services/<service>/src/homeward/<service>
    if source.is_dir():
        return source
    raise FileNotFoundError(f"no migrations for homeward.{package.name} at {packaged} or {source}")
