"""The admin CLI: recipients, subscriptions, opt-outs, bulk import and requeueing failed emails.

It talks to the service's database (``HOMEWARD_NOTIFICATIONS_DATABASE_URL``) and applies the
migrations first, so it works before the service has ever started.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from homeward.contracts.vocab import Role
from homeward.kit.clock import clock_from
from homeward.kit.db import migrate
from homeward.kit.logging import configure_logging
from homeward.kit.topics import Topics

from .. import management
from ..adapters.importfile import UnreadableFile, read_rows
from ..adapters.postgres import PgDirectory, PgEmailQueue
from ..domain.alerts import EVENT_NAMES
from ..domain.model import Recipient, Subscription
from ..domain.recipients import InvalidInput, recipient_from
from ..settings import NotificationsSettings
from .app import MIGRATIONS, SERVICE

app = typer.Typer(help="Homeward notifications: who is told what.", no_args_is_help=True, add_completion=False)
recipients_app = typer.Typer(help="Staff who receive alert emails.", no_args_is_help=True)
subscriptions_app = typer.Typer(help="Which alerts each recipient receives.", no_args_is_help=True)
app.add_typer(recipients_app, name="recipients")
app.add_typer(subscriptions_app, name="subscriptions")

T = TypeVar("T")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of lines for people")]
EVENT_HELP = f"One of: {', '.join(EVENT_NAMES)}"


@asynccontextmanager
async def _directory(settings: NotificationsSettings) -> AsyncIterator[PgDirectory]:
    await migrate(settings.database_url, SERVICE, MIGRATIONS)
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            yield PgDirectory(conn)
    finally:
        await conn.close()


def _run(work: Callable[[NotificationsSettings], Coroutine[Any, Any, T]]) -> T:
    settings = NotificationsSettings()
    # The CLI's own output is its result; the service's info logs would only bury it.
    configure_logging(SERVICE, "WARNING", "console")
    try:
        return asyncio.run(work(settings))
    except (InvalidInput, management.UnknownRecipient, UnreadableFile) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _recipient_json(r: Recipient) -> dict[str, Any]:
    return {
        "email": r.email,
        "display_name": r.display_name,
        "organisation": r.organisation,
        "role": r.role.value,
        "digest": r.digest,
        "active": r.active,
    }


def _describe(r: Recipient) -> str:
    flags = [f for f, on in (("digest", r.digest), ("inactive", not r.active)) if on]
    name = f" ({r.display_name})" if r.display_name else ""
    return f"{r.email}{name}  {r.organisation}  {r.role.value}" + (f"  [{', '.join(flags)}]" if flags else "")


@recipients_app.command("add")
def recipients_add(
    email: str,
    org: Annotated[str, typer.Option("--org", help="ODS code of the commissioner or provider")],
    role: Annotated[str, typer.Option("--role", help="One of: " + ", ".join(r.value for r in Role))],
    name: Annotated[str | None, typer.Option("--name", help="Display name for the To: header")] = None,
    digest: Annotated[bool, typer.Option("--digest/--no-digest", help="A daily digest instead of each alert")] = False,
    defaults: Annotated[bool, typer.Option("--defaults/--no-defaults", help="Subscribe to the role's defaults")] = True,
) -> None:
    """Add a recipient (or update one with the same address)."""

    async def work(settings: NotificationsSettings) -> None:
        spec = recipient_from(
            {"email": email, "org": org, "role": role, "name": name, "digest": digest, "defaults": defaults},
            settings.allowed_reserved_domains,
        )
        async with _directory(settings) as d:
            recipient, created, subscribed = await management.add_recipient(d, spec)
        typer.echo(f"{'added' if created else 'updated'} {_describe(recipient)}")
        if subscribed:
            typer.echo(f"subscribed to {', '.join(subscribed)}")

    _run(work)


@recipients_app.command("list")
def recipients_list(org: Annotated[str | None, typer.Option("--org")] = None, json_out: JsonFlag = False) -> None:
    """List recipients."""

    async def work(settings: NotificationsSettings) -> list[Recipient]:
        async with _directory(settings) as d:
            return await d.recipients(org.upper() if org else None)

    recipients = _run(work)
    if json_out:
        typer.echo(json.dumps([_recipient_json(r) for r in recipients], indent=2))
        return
    for r in recipients:
        typer.echo(_describe(r))


@recipients_app.command("import")
def recipients_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)], json_out: JsonFlag = False
) -> None:
    """Import recipients from CSV (header: email,org,role,name,digest,defaults) or YAML (a list of the same).

    Each row is checked on its own: valid rows are imported, invalid ones are reported by line."""

    async def work(settings: NotificationsSettings) -> management.ImportReport:
        rows = read_rows(file)
        async with _directory(settings) as d:
            return await management.import_recipients(d, rows, settings.allowed_reserved_domains)

    report = _run(work)
    if json_out:
        doc = {
            "added": report.added,
            "updated": report.updated,
            "subscriptions_added": report.subscriptions,
            "refused": [{"line": line, "problem": problem} for line, problem in report.errors],
        }
        typer.echo(json.dumps(doc, indent=2))
    else:
        for line, problem in report.errors:
            typer.echo(f"{file.name}:{line}: {problem}", err=True)
        typer.echo(
            f"{report.added} added, {report.updated} updated, {report.subscriptions} subscriptions added, "
            f"{len(report.errors)} rows refused"
        )
    if report.errors:
        raise typer.Exit(1)


def _set_active(email: str, active: bool) -> None:
    async def work(settings: NotificationsSettings) -> None:
        async with _directory(settings) as d:
            r = await management.set_active(d, email, active)
        typer.echo(f"{'activated' if active else 'deactivated'} {r.email}")

    _run(work)


@recipients_app.command("deactivate")
def recipients_deactivate(email: str) -> None:
    """Stop sending anything to a recipient (their history is kept)."""
    _set_active(email, False)


@recipients_app.command("activate")
def recipients_activate(email: str) -> None:
    _set_active(email, True)


@subscriptions_app.command("list")
def subscriptions_list(
    email: Annotated[str | None, typer.Option("--email")] = None, json_out: JsonFlag = False
) -> None:
    """List subscriptions (all, or one recipient's)."""

    async def work(settings: NotificationsSettings) -> list[tuple[Recipient, Subscription]]:
        async with _directory(settings) as d:
            rid = None
            if email:
                found = await d.find(email.strip().lower())
                if found is None:
                    raise management.UnknownRecipient(f"no recipient with the address {email}")
                rid = found.id
            return await d.subscriptions(rid)

    listed = _run(work)
    if json_out:
        doc = [
            {
                "email": r.email,
                "organisation": r.organisation,
                "role": r.role.value,
                "event_type": s.event_type,
                "min_escalation_level": s.min_escalation_level,
                "max_escalation_level": s.max_escalation_level,
                "opted_out_at": s.opted_out_at.isoformat() if s.opted_out_at else None,
            }
            for r, s in listed
        ]
        typer.echo(json.dumps(doc, indent=2))
        return
    for r, s in listed:
        levels = f"levels {s.min_escalation_level}-{s.max_escalation_level or ''}"
        state = f"opted out {s.opted_out_at:%Y-%m-%d}" if s.opted_out_at else "active"
        typer.echo(f"{r.email}  {r.organisation}  {r.role.value}  {s.event_type}  {levels}  {state}")


@subscriptions_app.command("add")
def subscriptions_add(
    email: str,
    event_type: Annotated[str, typer.Argument(help=EVENT_HELP)],
    min_level: Annotated[int, typer.Option("--min-level")] = 1,
    max_level: Annotated[int | None, typer.Option("--max-level")] = None,
) -> None:
    """Subscribe a recipient to an event type (or change its escalation levels)."""

    async def work(settings: NotificationsSettings) -> None:
        async with _directory(settings) as d:
            await management.subscribe(d, email, event_type, min_level, max_level)
        typer.echo(f"{email} subscribed to {event_type}")

    _run(work)


@subscriptions_app.command("defaults")
def subscriptions_defaults(email: str) -> None:
    """Subscribe a recipient to the default alerts for their role."""

    async def work(settings: NotificationsSettings) -> None:
        async with _directory(settings) as d:
            r = await d.find(email.strip().lower())
            if r is None:
                raise management.UnknownRecipient(f"no recipient with the address {email}")
            added = await management.subscribe_defaults(d, r)
        typer.echo(f"subscribed to {', '.join(added)}" if added else "already subscribed to every default")

    _run(work)


@app.command("opt-out")
def opt_out(email: str, event_type: Annotated[str, typer.Argument(help=EVENT_HELP)]) -> None:
    """Stop one kind of alert for one recipient (kept, so opt-in restores it)."""

    async def work(settings: NotificationsSettings) -> None:
        async with _directory(settings) as d:
            await management.opt_out(d, email, event_type, clock_from(settings.common.clock).now())
        typer.echo(f"{email} opted out of {event_type}")

    _run(work)


@app.command("opt-in")
def opt_in(email: str, event_type: Annotated[str, typer.Argument(help=EVENT_HELP)]) -> None:
    """Undo an opt-out."""

    async def work(settings: NotificationsSettings) -> None:
        async with _directory(settings) as d:
            await management.opt_in(d, email, event_type)
        typer.echo(f"{email} opted in to {event_type}")

    _run(work)


@app.command("retry-failed")
def retry_failed(email_id: Annotated[str | None, typer.Option("--id", help="Only this email")] = None) -> None:
    """Put failed emails back in the queue with fresh attempts (after a long SMTP outage, say)."""

    async def work(settings: NotificationsSettings) -> int:
        await migrate(settings.database_url, SERVICE, MIGRATIONS)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
        assert pool is not None
        try:
            return await PgEmailQueue(pool, Topics(settings.kafka.topic_namespace)).requeue_failed(email_id)
        finally:
            await pool.close()

    typer.echo(f"{_run(work)} failed emails queued again")
