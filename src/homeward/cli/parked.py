"""``homeward parked``: every service's parking lot in one listing (homeward.kit.parking)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .access import AUDITED, each_database

if TYPE_CHECKING:
    from homeward.kit.parking import Parked

SERVICES = AUDITED


async def read_lots(
    services: Sequence[str], statuses: Sequence[str], awaiting: str | None, limit: int
) -> tuple[list[tuple[str, Parked]], dict[str, dict[str, int]], dict[str, str]]:
    """Each service's entries (newest first), its count per status, and the services that
    could not be read (why)."""
    from homeward.kit.parking import listing

    rows: list[tuple[str, Parked]] = []
    counts: dict[str, dict[str, int]] = {}

    async def one(service: str, conn: Any) -> None:
        entries, counts[service] = await listing(conn, statuses=statuses, awaiting=awaiting, limit=limit)
        rows.extend((service, p) for p in entries)

    problems = await each_database(services, one, "parking_lot", "the parking lot")
    rows.sort(key=lambda sp: sp[1].parked_at, reverse=True)
    return rows[:limit], counts, problems


def parked(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="parked (the default), applied, rejected, expired, or all"),
    ] = None,
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help=f"Only these services (of {', '.join(SERVICES)})")
    ] = None,
    awaiting: Annotated[
        str | None, typer.Option("--awaiting", help="Only entries waiting for this, e.g. placement:P1")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many entries, the newest")] = 1000,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Events waiting for an aggregate not yet seen, in every service: what each waits for, why,
    until when, and how those that ended ended (applied, rejected or expired: both of the
    latter are on the service's dead-letter topic, see `homeward dlq`).

    Reads each service's database (HOMEWARD_<SERVICE>_DATABASE_URL, else the native stack's)."""
    import asyncio
    import json

    from homeward.kit.parking import STATUSES
    from rich.console import Console
    from rich.table import Table

    wanted = list(dict.fromkeys(service or SERVICES))
    unknown = [s for s in wanted if s not in SERVICES]
    if unknown:
        raise typer.BadParameter(
            f"{', '.join(unknown)}: the services are {', '.join(SERVICES)}", param_hint="--service"
        )
    statuses = list(STATUSES) if "all" in (status or []) else list(dict.fromkeys(status or ["parked"]))
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        raise typer.BadParameter(f"{', '.join(bad)}: one of {', '.join(STATUSES)} or all", param_hint="--status")
    rows, counts, problems = asyncio.run(read_lots(wanted, statuses, awaiting, limit))
    err = Console(stderr=True)
    for name, why in problems.items():
        err.print(f"[yellow]{name}: the parking lot could not be read: {why}[/]")
    if json_out:
        out = {
            "counts": counts,
            "entries": [{"service": s, **p.to_json()} for s, p in rows],
            "unreadable": problems,
        }
        typer.echo(json.dumps(out, indent=2))
    else:
        for name, by_status in counts.items():
            err.print(f"{name}: " + ", ".join(f"{n} {s}" for s, n in by_status.items()))
        table = Table(title=f"{len(rows)} parked event(s): {', '.join(statuses)}")
        for column in ("parked at", "service", "event", "awaiting", "reason", "expires", "status", "resolution"):
            table.add_column(column)
        for s, p in rows:
            table.add_row(
                p.parked_at.isoformat(timespec="seconds"),
                s,
                f"{p.event_type} {p.event_id}",
                p.awaiting,
                p.reason,
                p.expires_at.date().isoformat() if p.expires_at else "never",
                p.status,
                p.resolution or "",
            )
        Console().print(table)
    if problems and len(problems) == len(wanted):
        raise typer.Exit(2)
