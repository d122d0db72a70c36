"""``homeward-budget`` (typer, as every Homeward CLI): each command, its options, and the
``--json`` convention (a summary for people by default, JSON with ``--json``)."""

from __future__ import annotations

import asyncio
import json

import pytest
from homeward.budget.entrypoints.cli import app, main
from typer.testing import CliRunner


def test_every_command_and_option_is_there() -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert top.exit_code == 0
    for command in ("serve", "check", "position", "accrue"):
        assert command in top.output
    options = {
        "check": ["--no-streams", "--json"],
        "position": ["--financial-year", "--as-of", "--json"],
        "accrue": ["--json"],
    }
    for command, wanted in options.items():
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        for option in wanted:
            assert option in shown.output, (command, option)


def test_a_bad_date_or_a_missing_commissioner_is_refused_before_any_connection() -> None:
    runner = CliRunner()
    env = {"HOMEWARD_BUDGET_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "COLUMNS": "200"}
    bad_date = runner.invoke(app, ["position", "05A", "--as-of", "20 November"], env=env)
    assert bad_date.exit_code == 2
    assert "--as-of" in bad_date.output
    missing = runner.invoke(app, ["position"], env=env)
    assert missing.exit_code == 2
    with pytest.raises(SystemExit) as unknown:
        main(["balance"])
    assert unknown.value.code == 2


@pytest.mark.integration
async def test_commands_print_a_summary_or_json_on_a_fresh_ledger(database: str) -> None:
    runner = CliRunner()
    env = {"HOMEWARD_BUDGET_DATABASE_URL": database, "HOMEWARD_CLOCK": "2026-11-20T12:00:00Z"}

    async def cli(*args: str) -> tuple[int, str]:
        result = await asyncio.to_thread(runner.invoke, app, list(args), env=env)
        return result.exit_code, result.stdout

    assert await cli("accrue") == (0, "accrued; 0 alert(s) queued\n")  # migrates the database first
    code, out = await cli("accrue", "--json")
    assert code == 0 and json.loads(out) == {"alerts_queued": 0}
    code, out = await cli("check")
    assert code == 0 and out.startswith("the ledger balances: 0 accounts, 0 transfers")
    code, out = await cli("check", "--json", "--no-streams")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out = await cli("position", "05A")
    assert code == 0
    assert out.splitlines()[0] == "05A budget position 2026-27 as of 2026-11-20"
    assert "  spent: £0.00" in out.splitlines()
    code, out = await cli("position", "05A", "--financial-year", "2025-26", "--as-of", "2026-03-31", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["financial_year"] == "2025-26" and doc["as_of"] == "2026-03-31"
    assert doc["spent_pence"] == 0
