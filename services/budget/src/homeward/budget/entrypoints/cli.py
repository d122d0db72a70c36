"""``homeward-budget``: with no command it runs the service; commands for finance and ops.

homeward-budget                     run the service (same as ``serve``)
homeward-budget check               prove the ledger balances; exit 1 if it does not
homeward-budget position 05A --financial-year 2026-27 --as-of 2026-11-20
homeward-budget accrue              run the accrual job once, as of the service clock

Each command prints a summary for people, or with ``--json`` the JSON a script reads, as the
``homeward`` commands do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from typing import Annotated, Any

import asyncpg
import typer
from homeward.kit.clock import clock_from
from homeward.kit.db import create_pool, migrate
from homeward.kit.logging import configure_logging
from homeward.kit.service import run
from homeward.kit.topics import Topics

from ..adapters import postgres as q
from ..domain.calendar import fy_label, fy_of, parse_fy
from ..domain.position import position as position_of
from ..settings import BudgetSettings
from .app import MIGRATIONS, build_config, build_definition
from .jobs import SERVICE, run_accrual

app = typer.Typer(help="Homeward budget service and ledger tools.", add_completion=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a summary")]


def _settings() -> BudgetSettings:
    settings = BudgetSettings()
    # The command's own output is its result; the service's info logs would only bury it.
    configure_logging(SERVICE, settings.common.log_level, "console")
    return settings


def _pounds(pence: Any) -> str:
    if not isinstance(pence, int) or isinstance(pence, bool):
        return str(pence)
    sign = "-" if pence < 0 else ""
    return f"{sign}£{abs(pence) // 100:,}.{abs(pence) % 100:02d}"


def _print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2))


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context) -> None:
    """With no command, runs the service (as ``serve`` does)."""
    if ctx.invoked_subcommand is None:
        serve()


@app.command()
def serve() -> None:
    """Run the service."""
    run(build_definition(BudgetSettings()))


@app.command()
def check(
    no_streams: Annotated[
        bool, typer.Option("--no-streams", help="Skip re-deriving each placement from its rate schedule")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Prove total debits equal credits and every cached balance matches its entries; exit 1 if not."""
    report = asyncio.run(_check(_settings(), not no_streams))
    if json_out:
        _print_json(report.to_json())
    elif report.ok:
        typer.echo(
            f"the ledger balances: {report.accounts} accounts, {report.transfers} transfers, "
            f"{report.streams} placements re-derived from their rates"
        )
    else:
        typer.echo(f"the ledger does NOT balance ({len(report.problems)} problem(s)):")
        for problem in report.problems:
            typer.echo(f"  {problem}")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def position(
    commissioner: Annotated[str, typer.Argument(help="Commissioner ODS code")],
    financial_year: Annotated[
        str | None, typer.Option("--financial-year", help="e.g. 2026-27 (default: the year of --as-of)")
    ] = None,
    as_of: Annotated[
        dt.date | None,
        typer.Option(
            "--as-of", parser=dt.date.fromisoformat, metavar="YYYY-MM-DD", help="Default: today by the service clock"
        ),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """A commissioner's position for a financial year."""
    doc = asyncio.run(_position(_settings(), commissioner, financial_year, as_of))
    if json_out:
        _print_json(doc)
        return
    typer.echo(f"{doc['commissioner']} budget position {doc['financial_year']} as of {doc['as_of']}")
    for key, value in doc.items():
        if key.endswith("_pence"):
            typer.echo(f"  {key.removesuffix('_pence').replace('_', ' ')}: {_pounds(value)}")
        elif key.endswith("_percent"):
            typer.echo(f"  {key.replace('_', ' ')}: {value}")


@app.command()
def accrue(json_out: JsonFlag = False) -> None:
    """Post elapsed bed-days now, as of the service clock."""
    alerts = asyncio.run(_accrue(_settings()))
    if json_out:
        _print_json({"alerts_queued": alerts})
    else:
        typer.echo(f"accrued; {alerts} alert(s) queued")


async def _check(settings: BudgetSettings, streams: bool) -> q.CheckReport:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await q.check(conn, streams=streams)
    finally:
        await conn.close()


async def _position(
    settings: BudgetSettings, commissioner: str, fy: str | None, as_of: dt.date | None
) -> dict[str, Any]:
    day = as_of or clock_from(settings.common.clock).today()
    label = fy_label(parse_fy(fy)) if fy else fy_label(fy_of(day))
    conn = await asyncpg.connect(settings.database_url)
    try:
        balances = await q.balances_as_of(conn, day, commissioner)
    finally:
        await conn.close()
    return {**position_of(balances, commissioner, label).to_json(), "as_of": day.isoformat()}


async def _accrue(settings: BudgetSettings) -> int:
    await migrate(settings.database_url, SERVICE, MIGRATIONS)
    pool = await create_pool(settings.database_url)
    try:
        return await run_accrual(
            pool,
            clock_from(settings.common.clock),
            topics=Topics(settings.kafka.topic_namespace),
            config=build_config(settings),
            batch_size=settings.accrual_batch_size,
        )
    finally:
        await pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    """The ``homeward-budget`` script (and ``python -m homeward.budget``); exits with the command's code."""
    app(args=None if argv is None else list(argv), prog_name="homeward-budget")
