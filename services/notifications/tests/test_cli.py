"""The admin CLI, run as staff run it (``python -m homeward.notifications ...``) against PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from homeward.notifications.entrypoints.cli import app
from typer.testing import CliRunner

pytestmark = pytest.mark.integration


@dataclass
class Result:
    code: int
    out: str
    err: str


async def _cli(database: str, *args: str) -> Result:
    """In-process (typer's runner, in a thread because the CLI runs its own event loop)."""
    runner = CliRunner()
    env = {"HOMEWARD_NOTIFICATIONS_DATABASE_URL": database}
    result = await asyncio.to_thread(runner.invoke, app, list(args), env=env)
    return Result(result.exit_code, result.stdout, result.stderr)


async def _python_m(database: str, *args: str) -> Result:
    """As a separate process, the way the main job imports its recipients file."""
    env = {**os.environ, "HOMEWARD_NOTIFICATIONS_DATABASE_URL": database}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "homeward.notifications",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def test_import_takes_the_valid_rows_and_reports_the_others_by_line(database: str, tmp_path: Path) -> None:
    csv_file = tmp_path / "staff.csv"
    csv_file.write_text(
        "email,org,role,name,digest\n"
        "case.manager@05a.nhs.invalid,05A,case_manager,Case Manager (05A),no\n"
        "not-an-email,05A,case_manager,,\n"
        "finance.lead@05a.nhs.invalid,05A,finance_lead,,yes\n"
        "bed.manager@05a.nhs.invalid,05A,porter,,\n"
    )
    result = await _python_m(database, "recipients", "import", str(csv_file))
    assert result.code == 1
    assert "staff.csv:3: email:" in result.err
    assert "staff.csv:5: role:" in result.err
    assert "2 added, 0 updated, 8 subscriptions added, 2 rows refused" in result.out

    yaml_file = tmp_path / "staff.yaml"
    yaml_file.write_text(
        "- {email: case.manager@05a.nhs.invalid, org: 05A, role: case_manager}\n"
        "- {email: clinical.lead@05a.nhs.invalid, org: 05A, role: clinical_lead}\n"
    )
    result = await _cli(database, "recipients", "import", str(yaml_file))
    assert (result.code, result.err) == (0, "")
    assert "1 added, 1 updated, 1 subscriptions added, 0 rows refused" in result.out

    listed = await _cli(database, "recipients", "list", "--org", "05a")
    assert listed.out.splitlines() == [
        "case.manager@05a.nhs.invalid (Case Manager (05A))  05A  case_manager",
        "clinical.lead@05a.nhs.invalid  05A  clinical_lead",
        "finance.lead@05a.nhs.invalid  05A  finance_lead  [digest]",
    ]


async def test_add_opt_out_and_opt_in_change_what_a_recipient_receives(database: str) -> None:
    added = await _cli(database, "recipients", "add", "Lead@05A.nhs.uk", "--org", "05A", "--role", "clinical_lead")
    assert added.code == 0, added.err
    assert "subscribed to ReviewOverdue" in added.out
    refused = await _cli(database, "recipients", "add", "lead@", "--org", "05A", "--role", "clinical_lead")
    assert refused.code == 1 and "email:" in refused.err

    assert (await _cli(database, "opt-out", "lead@05a.nhs.uk", "ReviewOverdue")).code == 0
    conn = await asyncpg.connect(database)
    try:
        opted = "SELECT opted_out_at IS NOT NULL FROM subscriptions WHERE event_type = 'ReviewOverdue'"
        assert await conn.fetchval(opted) is True
        assert (await _cli(database, "opt-in", "lead@05a.nhs.uk", "ReviewOverdue")).code == 0
        assert await conn.fetchval(opted) is False
        unknown = await _cli(database, "opt-out", "lead@05a.nhs.uk", "InvoiceVarianceFound")
        assert unknown.code == 1 and "no subscription to InvoiceVarianceFound" in unknown.err

        changed = await _cli(database, "subscriptions", "add", "lead@05a.nhs.uk", "ReviewOverdue", "--min-level", "3")
        assert changed.code == 0, changed.err
        assert await conn.fetchval("SELECT min_escalation_level FROM subscriptions") == 3
    finally:
        await conn.close()
    listed = await _cli(database, "subscriptions", "list", "--email", "lead@05a.nhs.uk")
    assert listed.out.strip() == "lead@05a.nhs.uk  05A  clinical_lead  ReviewOverdue  levels 3-  active"
