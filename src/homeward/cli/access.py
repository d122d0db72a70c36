"""Staff sign-in for the command line: ``homeward token`` (a token from the native stack's local
key), the bearer token the ``homeward`` commands send to the services' APIs, and ``homeward
audit`` (who read what).

A command sends ``$HOMEWARD_TOKEN`` when it is set (a token from your organisation's identity
provider, or from ``homeward token``). Without it, on a checkout with the native stack, the
command signs a short-lived token with the local key for the organisation it is asked about
(docs/staff-access.md): whoever can read ``.local/secrets/`` is the local stack's operator.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from homeward.kit.auth import OPS, ROLES, issue_local_token, parse_ttl

if TYPE_CHECKING:
    from homeward.kit.audit import AuditRow

TOKEN_VAR = "HOMEWARD_TOKEN"
# A token the CLI signs for itself lives only as long as the command.
SELF_SIGNED_TTL = dt.timedelta(minutes=5)


class NoToken(RuntimeError):
    """No token in the environment and none can be signed here; the message says what to do."""


def secrets_folder() -> Path:
    from homeward.devstack.config import StackConfig
    from homeward.devstack.secrets import secrets_dir

    return secrets_dir(StackConfig.load())


def local_token(org: str, role: str, *, sub: str | None = None, ttl: dt.timedelta = SELF_SIGNED_TTL) -> str:
    """A token signed by this checkout's local key (made if absent, as ``make up`` does)."""
    from homeward.devstack.secrets import ensure_auth

    ensure_auth()
    return issue_local_token(secrets_folder(), org=org, role=role, sub=sub or f"cli:{role}@{org.lower()}", ttl=ttl)


def bearer(org: str | None = None, role: str = OPS) -> dict[str, str]:
    """The Authorization header for a command: ``$HOMEWARD_TOKEN``, else a short-lived local
    token for ``org`` (ops when no organisation is concerned) with ``role``."""
    token = os.environ.get(TOKEN_VAR, "").strip()
    if not token:
        try:
            token = local_token(org or "HOMEWARD", role if org else OPS)
        except Exception as exc:
            raise NoToken(
                f"set {TOKEN_VAR} to a staff token (docs/staff-access.md); none could be signed here: {exc}"
            ) from exc
    return {"Authorization": f"Bearer {token}"}


def token(
    org: Annotated[str, typer.Option("--org", help="ODS code of the caller's organisation, e.g. 05A or RX1")],
    role: Annotated[str, typer.Option("--role", help=f"One of: {', '.join(ROLES)}")],
    ttl: Annotated[str, typer.Option("--ttl", help="How long it is valid: 90s, 15m, 8h, 2d")] = "8h",
    sub: Annotated[str | None, typer.Option("--sub", help="Who it names (default <role>@<org>)")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A display name")] = None,
) -> None:
    """Print a staff token signed by the native stack's local key (made by `make up`).

    Send it as `Authorization: Bearer <token>`, or export HOMEWARD_TOKEN=<token> for the
    `homeward` commands. Only the local stack accepts it; elsewhere tokens come from the
    organisation's identity provider (docs/staff-access.md)."""
    if role not in ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(ROLES)}", param_hint="--role")
    try:
        lifetime = parse_ttl(ttl)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from None
    from homeward.devstack.secrets import ensure_auth

    ensure_auth()
    try:
        signed = issue_local_token(secrets_folder(), org=org, role=role, sub=sub, name=name, ttl=lifetime)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--org") from None
    typer.echo(signed)


# ---- homeward audit ---------------------------------------------------------------------
AUDITED = ("placements", "referrals", "budget", "notifications", "ingress")


def database_url(service: str) -> str:
    """``$HOMEWARD_<SERVICE>_DATABASE_URL``, else the native stack's database of the service."""
    given = os.environ.get(f"HOMEWARD_{service.upper()}_DATABASE_URL", "").strip()
    if given:
        return given
    from homeward.devstack.stack import stack_info

    return stack_info().database_url(service)


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``2026-11-20``, ``2026-11-20T09:00:00Z`` or a span back from now (``8h``, ``7d``)."""
    now = now or dt.datetime.now(dt.UTC)
    raw = text.strip()
    try:
        return now - parse_ttl(raw)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("--since is a date, a date and time, or a span such as 8h or 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


async def each_database(
    services: Sequence[str], read: Callable[[str, Any], Awaitable[None]], table: str, what: str
) -> dict[str, str]:
    """``read(service, connection)`` on each service's database in turn; the services that could
    not be read, and why (``table`` missing: the service has not started since ``what`` came)."""
    import asyncpg

    problems: dict[str, str] = {}
    for service in services:
        try:
            conn = await asyncpg.connect(database_url(service), timeout=10)
        except Exception as exc:
            problems[service] = f"{type(exc).__name__}: {exc}"
            continue
        try:
            await read(service, conn)
        except asyncpg.UndefinedTableError:
            problems[service] = f"no {table} table yet (the service has not started since {what} came)"
        finally:
            await conn.close()
    return problems


async def read_trail(
    services: Sequence[str], since: dt.datetime | None, org: str | None, limit: int
) -> tuple[list[AuditRow], dict[str, str]]:
    """Every service's trail merged in time order, and the services that could not be read (why)."""
    from homeward.kit.audit import read

    rows: list[AuditRow] = []

    async def one(service: str, conn: Any) -> None:
        rows.extend(await read(conn, since=since, organisation=org, limit=limit))

    problems = await each_database(services, one, "audit_log", "the audit trail")
    rows.sort(key=lambda r: r.at)
    return rows[-limit:] if len(rows) > limit else rows, problems


def audit(
    since: Annotated[
        str | None, typer.Option("--since", help="From: 2026-11-20, 2026-11-20T09:00Z, or back from now: 8h, 7d")
    ] = None,
    org: Annotated[str | None, typer.Option("--org", help="Only reads by this organisation's staff (ODS code)")] = None,
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help=f"Only these services' trails (of {', '.join(AUDITED)})")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many rows, the latest")] = 1000,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Who read placement-level data: every service's append-only audit trail, oldest first.

    Reads each service's database (HOMEWARD_<SERVICE>_DATABASE_URL, else the native stack's)."""
    import asyncio
    import json

    from rich.console import Console
    from rich.table import Table

    wanted = list(dict.fromkeys(service or AUDITED))
    unknown = [s for s in wanted if s not in AUDITED]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: the services are {', '.join(AUDITED)}", param_hint="--service")
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    rows, problems = asyncio.run(read_trail(wanted, start, org.strip().upper() if org else None, limit))
    err = Console(stderr=True)
    for name, why in problems.items():
        err.print(f"[yellow]{name}: the audit trail could not be read: {why}[/]")
    if json_out:
        typer.echo(json.dumps({"rows": [r.to_json() for r in rows], "unreadable": problems}, indent=2))
    else:
        table = Table(title=f"{len(rows)} read(s) of placement-level data")
        for column in ("at", "service", "organisation", "role", "who", "what", "references"):
            table.add_column(column)
        for r in rows:
            refs = ", ".join(r.refs[:5]) + (f" … (+{len(r.refs) - 5})" if len(r.refs) > 5 else "")
            what = f"{r.action}?{r.query}" if r.query else r.action
            who = f"{r.sub} ({r.name})" if r.name else r.sub
            table.add_row(r.at.isoformat(timespec="seconds"), r.service, r.organisation, r.role, who, what, refs)
        Console().print(table)
    if problems and len(problems) == len(wanted):
        raise typer.Exit(2)
