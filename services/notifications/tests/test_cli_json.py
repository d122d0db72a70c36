"""The admin CLI's ``--json`` (the convention of every Homeward CLI): the same lists and import
report as the lines for people, as JSON a script reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from homeward.notifications.entrypoints.cli import app
from typer.testing import CliRunner

pytestmark = pytest.mark.integration


async def _cli(database: str, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    env = {"HOMEWARD_NOTIFICATIONS_DATABASE_URL": database}
    result = await asyncio.to_thread(runner.invoke, app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


async def test_lists_and_the_import_report_as_json(database: str, tmp_path: Path) -> None:
    staff = tmp_path / "staff.csv"
    staff.write_text(
        "email,org,role,name,digest\n"
        "case.manager@05a.nhs.invalid,05A,case_manager,Case Manager (05A),no\n"
        "not-an-email,05A,case_manager,,\n"
    )
    code, out, err = await _cli(database, "recipients", "import", str(staff), "--json")
    report = json.loads(out)
    assert code == 1 and err == ""
    assert (report["added"], report["updated"]) == (1, 0) and report["subscriptions_added"] > 0
    assert [r["line"] for r in report["refused"]] == [3] and "email" in report["refused"][0]["problem"]

    code, out, _ = await _cli(database, "recipients", "list", "--org", "05a", "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "email": "case.manager@05a.nhs.invalid",
            "display_name": "Case Manager (05A)",
            "organisation": "05A",
            "role": "case_manager",
            "digest": False,
            "active": True,
        }
    ]

    assert (await _cli(database, "opt-out", "case.manager@05a.nhs.invalid", "ReviewOverdue"))[0] == 0
    code, out, _ = await _cli(database, "subscriptions", "list", "--email", "case.manager@05a.nhs.invalid", "--json")
    assert code == 0
    listed: list[dict[str, Any]] = json.loads(out)
    assert {s["event_type"] for s in listed} >= {"ReviewOverdue"}
    assert all(s["email"] == "case.manager@05a.nhs.invalid" and s["role"] == "case_manager" for s in listed)
    opted = [s for s in listed if s["opted_out_at"] is not None]
    assert [s["event_type"] for s in opted] == ["ReviewOverdue"]
    code, out, _ = await _cli(database, "subscriptions", "list", "--email", "case.manager@05a.nhs.invalid")
    assert len(out.splitlines()) == len(listed)  # the same rows, as lines for people
