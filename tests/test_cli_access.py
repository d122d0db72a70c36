"""`homeward token` and `homeward audit` as an operator runs them: a token the services accept,
and every service's audit trail read together (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from homeward.kit import audit
from homeward.kit.auth import AuthSettings, Caller, TokenVerifier
from homeward.kit.db import migrate
from homeward.testing import Infra, scratch_database
from starlette.requests import Request
from typer.testing import CliRunner

from homeward.cli import access
from homeward.cli.main import app


def _request(path: str, query: str = "") -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "query_string": query.encode(), "headers": []})


def test_token_prints_a_token_the_local_jwks_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from homeward.kit.auth import ensure_local_key, local_settings

    ensure_local_key(tmp_path)
    monkeypatch.setattr(access, "secrets_folder", lambda: tmp_path)
    monkeypatch.setattr("homeward.devstack.secrets.ensure_auth", lambda *a, **k: {})
    done = CliRunner().invoke(
        app, ["token", "--org", "05a", "--role", "clinical-lead", "--ttl", "15m", "--sub", "dr-a"]
    )
    assert done.exit_code == 0, done.output
    settings = local_settings(tmp_path)
    assert isinstance(settings, AuthSettings)
    assert TokenVerifier(settings).verify(done.output.strip()) == Caller("dr-a", "05A", "clinical-lead")
    refused = CliRunner().invoke(app, ["token", "--org", "05A", "--role", "superuser"])
    assert refused.exit_code != 0 and "--role" in refused.output
    assert CliRunner().invoke(app, ["token", "--org", "05A", "--role", "ops", "--ttl", "soon"]).exit_code != 0


async def _rows(dsn: str, service: str, rows: list[tuple[Caller, str, list[str]]]) -> None:
    await migrate(dsn, service, None)
    conn = await asyncpg.connect(dsn)
    try:
        for caller, path, refs in rows:
            await audit.record(conn, service, caller, _request(path, "as_of=2026-11-20"), refs)
    finally:
        await conn.close()


async def test_audit_lists_every_services_trail_in_time_order(infra: Infra, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = Caller("alice", "05A", "case-manager", "Alice"), Caller("bob", "05R", "finance")
    async with scratch_database(infra) as placements, scratch_database(infra) as budget:
        await _rows(placements, "placements", [(alice, "/placements", ["PLC-1", "pt_1"])])
        await _rows(budget, "budget", [(bob, "/invoices/05R", ["PLC-9"])])
        await _rows(placements, "placements", [(alice, "/placements/PLC-1", ["PLC-1"])])
        monkeypatch.setenv("HOMEWARD_PLACEMENTS_DATABASE_URL", placements)
        monkeypatch.setenv("HOMEWARD_BUDGET_DATABASE_URL", budget)
        runner = CliRunner()

        async def run(*args: str) -> dict[str, Any]:
            # The command runs its own event loop: in a thread, as from a shell.
            done = await asyncio.to_thread(
                runner.invoke, app, ["audit", "-s", "placements", "-s", "budget", "--json", *args]
            )
            assert done.exit_code == 0, done.output
            return json.loads(done.stdout)

        every = (await run())["rows"]
        assert [(r["service"], r["sub"], r["action"]) for r in every] == [
            ("placements", "alice", "GET /placements"),
            ("budget", "bob", "GET /invoices/05R"),
            ("placements", "alice", "GET /placements/PLC-1"),
        ]
        assert every[0]["refs"] == ["PLC-1", "pt_1"] and every[0]["query"] == "as_of=2026-11-20"
        assert every[0]["organisation"] == "05A" and every[0]["name"] == "Alice"
        assert [r["sub"] for r in (await run("--org", "05r"))["rows"]] == ["bob"]
        assert (await run("--since", "2999-01-01"))["rows"] == []
        assert len((await run("--since", "1h"))["rows"]) == 3
        assert [r["action"] for r in (await run("--limit", "1"))["rows"]] == ["GET /placements/PLC-1"]
        table = await asyncio.to_thread(
            runner.invoke, app, ["audit", "-s", "placements", "-s", "budget"], env={"COLUMNS": "250"}
        )
        assert table.exit_code == 0 and "GET /invoices/05R" in table.stdout and "alice (Alice)" in table.stdout


def test_since_takes_dates_times_and_spans() -> None:
    now = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)
    assert access.parse_since("8h", now) == now - dt.timedelta(hours=8)
    assert access.parse_since("2026-11-20", now) == dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    assert access.parse_since("2026-11-20T09:00:00Z", now) == dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="--since"):
        access.parse_since("last tuesday", now)


def test_a_refused_staff_command_says_why_and_how_to_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    from homeward.testing import staff_token

    from homeward.cli import api

    sent: list[dict[str, str]] = []

    def refuse(url: str, params: Any = None, headers: Any = None, timeout: float = 0) -> httpx.Response:
        sent.append(dict(headers or {}))
        body = {"type": "about:blank", "title": "Forbidden", "status": 403, "detail": "05A staff may not see 05R"}
        return httpx.Response(403, json=body, headers={"content-type": "application/problem+json"})

    monkeypatch.setattr(api.httpx, "get", refuse)
    token = staff_token("05A", "case-manager")
    done = CliRunner().invoke(
        app, ["placements", "list", "--commissioner", "05R"], env={"HOMEWARD_TOKEN": token, "COLUMNS": "200"}
    )
    assert done.exit_code == 1
    assert "403: 05A staff may not see 05R" in done.output and "HOMEWARD_TOKEN" in done.output
    assert sent == [{"Authorization": f"Bearer {token}"}]  # the token given, as given


async def test_parked_lists_every_services_parking_lot(infra: Infra, monkeypatch: pytest.MonkeyPatch) -> None:
    from homeward.contracts import new_event, partner_source
    from homeward.contracts.events import PlacementEnded
    from homeward.contracts.vocab import EndReason
    from homeward.kit.clock import FixedClock
    from homeward.kit.parking import ParkingLot

    now = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)

    async def park(dsn: str, service: str, pid: str) -> None:
        await migrate(dsn, service, None)
        conn = await asyncpg.connect(dsn)
        try:
            lot = ParkingLot(conn, service=service, clock=FixedClock(now), expiry=dt.timedelta(days=30))
            data = PlacementEnded(placement_id=pid, end_date=now.date(), end_reason=EndReason.DISCHARGED_HOME)
            await lot.park(
                new_event(data, source=partner_source("05A"), id=f"end-{pid}"),
                awaiting=f"placement:{pid}",
                reason="placement-unknown",
            )
        finally:
            await conn.close()

    async with scratch_database(infra) as placements, scratch_database(infra) as budget:
        await park(placements, "placements", "PLC-1")
        await park(budget, "budget", "PLC-2")
        monkeypatch.setenv("HOMEWARD_PLACEMENTS_DATABASE_URL", placements)
        monkeypatch.setenv("HOMEWARD_BUDGET_DATABASE_URL", budget)
        runner = CliRunner()

        async def run(*args: str) -> dict[str, Any]:
            done = await asyncio.to_thread(
                runner.invoke, app, ["parked", "-s", "placements", "-s", "budget", "--json", *args]
            )
            assert done.exit_code == 0, done.output
            return json.loads(done.stdout)

        listed = await run()
        assert sorted((e["service"], e["awaiting"], e["reason"]) for e in listed["entries"]) == [
            ("budget", "placement:PLC-2", "placement-unknown"),
            ("placements", "placement:PLC-1", "placement-unknown"),
        ]
        assert listed["counts"]["placements"]["parked"] == 1
        assert (await run("--awaiting", "placement:PLC-2"))["entries"][0]["event_id"] == "end-PLC-2"
        assert (await run("--status", "expired"))["entries"] == []
        refused = await asyncio.to_thread(runner.invoke, app, ["parked", "--status", "lost"])
        assert refused.exit_code != 0
