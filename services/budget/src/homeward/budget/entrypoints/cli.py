"""``homeward-budget``: with no arguments it runs the service; subcommands for finance and ops.

homeward-budget                     run the service (same as ``serve``)
homeward-budget check               prove the ledger balances; exit 1 if it does not
homeward-budget position 05A --financial-year 2026-27 --as-of 2026-11-20
homeward-budget accrue              run the accrual job once, as of the service clock
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence

import asyncpg
from homeward.kit.clock import clock_from
from homeward.kit.db import create_pool, migrate
from homeward.kit.logging import configure_logging
from homeward.kit.service import run
from homeward.kit.topics import Topics

from ..adapters import postgres as q
from ..domain.calendar import fy_label, fy_of, parse_fy
from ..domain.position import position
from ..settings import BudgetSettings
from .app import MIGRATIONS, build_definition, rules_from
from .jobs import SERVICE, run_accrual


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="homeward-budget", description="Homeward budget service and ledger tools")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    c = sub.add_parser("check", help="prove total debits equal credits and every cached balance matches its entries")
    c.add_argument("--no-streams", action="store_true", help="skip re-deriving each placement from its rate schedule")
    pos = sub.add_parser("position", help="a commissioner's position for a financial year")
    pos.add_argument("commissioner")
    pos.add_argument("--financial-year", help="e.g. 2026-27 (default: the year of --as-of)")
    pos.add_argument("--as-of", type=dt.date.fromisoformat, help="YYYY-MM-DD (default: today by the service clock)")
    sub.add_parser("accrue", help="post elapsed bed-days now, as of the service clock")
    return p


async def _check(settings: BudgetSettings, streams: bool) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        report = await q.check(conn, streams=streams)
    finally:
        await conn.close()
    print(json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else 1


async def _position(settings: BudgetSettings, commissioner: str, fy: str | None, as_of: dt.date | None) -> int:
    day = as_of or clock_from(settings.common.clock).today()
    label = fy_label(parse_fy(fy)) if fy else fy_label(fy_of(day))
    conn = await asyncpg.connect(settings.database_url)
    try:
        balances = await q.balances_as_of(conn, day, commissioner)
    finally:
        await conn.close()
    print(json.dumps({**position(balances, commissioner, label).to_json(), "as_of": day.isoformat()}, indent=2))
    return 0


async def _accrue(settings: BudgetSettings) -> int:
    await migrate(settings.database_url, SERVICE, MIGRATIONS)
    pool = await create_pool(settings.database_url)
    try:
        alerts = await run_accrual(
            pool,
            clock_from(settings.common.clock),
            topics=Topics(settings.kafka.topic_namespace),
            rules=rules_from(settings),
            batch_size=settings.accrual_batch_size,
        )
    finally:
        await pool.close()
    print(json.dumps({"alerts_queued": alerts}))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    settings = BudgetSettings()
    if args.command in (None, "serve"):
        run(build_definition(settings))
        return
    configure_logging(SERVICE, settings.common.log_level, "console")
    if args.command == "check":
        code = asyncio.run(_check(settings, not args.no_streams))
    elif args.command == "position":
        code = asyncio.run(_position(settings, args.commissioner, args.financial_year, args.as_of))
    else:
        code = asyncio.run(_accrue(settings))
    raise SystemExit(code)
