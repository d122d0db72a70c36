"""``homeward-stack``: start, stop and inspect the native local stack."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from . import stack
from .config import StackConfig
from .errors import StackError
from .kafka import list_topics
from .proc import Log
from .secrets import ensure_auth, ensure_secrets

try:  # rich is optional (typer normally brings it)
    from rich.console import Console
    from rich.table import Table

    _err: Any = Console(stderr=True, highlight=False, soft_wrap=True)
    _out: Any = Console(highlight=False, soft_wrap=True)
except ImportError:  # pragma: no cover
    Console = None  # type: ignore[assignment,misc]
    Table = None  # type: ignore[assignment,misc]
    _err = None
    _out = None

T = TypeVar("T")

app = typer.Typer(
    name="homeward-stack",
    help="Homeward's local infrastructure without Docker: Kafka 4.1 (KRaft), PostgreSQL 15, MailDev. "
    "State lives in <repo>/.local/.",
    no_args_is_help=True,
    add_completion=False,
)


def _log(msg: str) -> None:
    if _err is not None:
        _err.print(f"[dim]{msg}[/dim]")
    else:
        print(msg, file=sys.stderr, flush=True)


def _say(msg: str, style: str = "") -> None:
    if _out is not None:
        _out.print(f"[{style}]{msg}[/{style}]" if style else msg)
    else:
        print(msg, flush=True)


def _guard(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except StackError as exc:
        if _err is not None:
            _err.print(f"[bold red]error:[/bold red] {exc.message}", markup=True)
            if exc.details:
                _err.print(exc.details, markup=False, highlight=False)
            if exc.hint:
                _err.print(f"[yellow]-> {exc.hint}[/yellow]", markup=True)
        else:
            print(f"error: {exc.render()}", file=sys.stderr)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(130) from None


def _print_addresses(info: stack.StackInfo) -> None:
    _say(f"Kafka bootstrap   {info.kafka_bootstrap}")
    _say(f"PostgreSQL admin  {info.postgres_admin_dsn}")
    for service, url in info.service_database_urls.items():
        _say(f"  {service:<15} {url}")
    _say(f"SMTP              {info.smtp_host}:{info.smtp_port}")
    _say(f"Mail web UI       {info.mail_web_url}   (JSON: {info.mail_api_url})")


PartnerOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--partner", "-p", help="ODS code of a partner whose topic partner.<ODS>.events to create (repeatable)"
    ),
]


@app.command()
def up(
    partner: PartnerOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing but errors")] = False,
) -> None:
    """Start Kafka, PostgreSQL and MailDev unless they run; create topics and databases. Idempotent."""
    log: Log = (lambda _m: None) if quiet else _log
    partners = partner if partner else None
    info = _guard(lambda: stack.ensure_up(partners=partners, log=log))
    _guard(ensure_secrets)  # the services' keys, random per checkout (.local/secrets/)
    _guard(ensure_auth)  # the local staff sign-in key and its JWKS (homeward token signs with it)
    if not quiet:
        _say("stack is up", "bold green")
        _print_addresses(info)
        _say('Environment for services and tests:  eval "$(homeward-stack env)"', "dim")


@app.command()
def down(
    wipe: Annotated[
        bool,
        typer.Option("--wipe", help="also delete Kafka data, the PostgreSQL cluster and stored mail (keeps downloads)"),
    ] = False,
) -> None:
    """Stop everything (Kafka SIGTERM, pg_ctl stop -m fast, MailDev)."""
    stopped = _guard(lambda: stack.down(wipe=wipe, log=_log))
    _say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def reset(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask first")] = False,
) -> None:
    """Empty the stack: delete Homeward's topics, recreate the service databases, delete stored mail."""
    if not yes:
        typer.confirm("Delete every Homeward topic, service database and stored email on this stack?", abort=True)
    _guard(lambda: stack.reset(log=_log))
    _say("stack is empty and ready", "bold green")


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Show each part up/down with its address. Exit code 0 if all are up, 3 otherwise."""
    parts = _guard(lambda: stack.status())
    if json_out:
        doc = [
            {"part": p.name, "state": p.state, "up": p.up, "address": p.address, "pid": p.pid, "note": p.detail}
            for p in parts
        ]
        print(json.dumps(doc, indent=2))
    elif _out is not None and Table is not None:
        table = Table(show_header=True, header_style="bold")
        for col in ("part", "state", "address", "pid", "note"):
            table.add_column(col)
        colours = {"up": "green", "down": "red", "starting": "yellow", "foreign": "magenta"}
        for p in parts:
            table.add_row(p.name, f"[{colours.get(p.state, '')}]{p.state}[/]", p.address, str(p.pid or ""), p.detail)
        _out.print(table)
    else:
        for p in parts:
            print(f"{p.name:<9} {p.state:<9} {p.address}  {p.pid or ''} {p.detail}")
    if not all(p.up for p in parts):
        raise typer.Exit(3)


@app.command()
def env() -> None:
    """Print `export HOMEWARD_...=...` lines: eval "$(homeward-stack env)"."""
    info = _guard(lambda: stack.stack_info())
    for key, value in {**info.as_env(), **_guard(ensure_secrets), **_guard(ensure_auth)}.items():
        print(f"export {key}={shlex.quote(value)}")


@app.command()
def topics(partner: PartnerOpt = None) -> None:
    """Create partner topics (and any missing declared topic), then list every topic."""
    partners = partner or []

    def work() -> list[str]:
        created = stack.create_partner_topics(partners)
        for name in created:
            _log(f"created {name}")
        return list_topics(StackConfig.load())

    for name in _guard(work):
        print(name)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
