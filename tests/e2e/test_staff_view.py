"""The staff view over the running services, in headless Chromium: signed in as a case manager
of 05A, the worklist shows exactly 05A's overdue reviews as the oracle computes them from the
scenario, and none of 05R's; the measures page shows the oracle's figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from homeward.kit.clock import FixedClock
from homeward.testing import free_port, staff_token

from homeward.cli.formatting import pounds
from homeward.staff import assets
from homeward.staff.app import build_app
from homeward.staff.settings import StaffSettings

from ..cdp import Browser
from ..test_staff import sign_in_by_keyboard
from . import measures_oracle, oracle
from .conftest import AS_OF, System

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(system: System) -> oracle.World:
    return oracle.replay(system.scenario)


@pytest.fixture(scope="module")
def staff_url(system: System) -> Iterator[str]:
    """The staff view in this process, in front of the end-to-end system's services."""
    settings = StaffSettings(**{f"{svc}_url": system.url(svc, "") for svc in system.ports if svc != "ingress"})
    app = build_app(settings, FixedClock(AS_OF), assets=assets.install(dev=True))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def _audit_rows(dsn: str, sub: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT organisation, role, action, refs FROM audit_log WHERE sub = $1 ORDER BY id", sub
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def _rows(browser: Browser, table: str) -> list[list[str]]:
    cells = browser.evaluate(
        f"Array.from(document.querySelectorAll('#{table} tbody tr')).map("
        "tr => Array.from(tr.children).map(c => c.innerText.trim()))"
    )
    return [list(r) for r in cells]


def _overdue_table(browser: Browser) -> dict[tuple[str, str], tuple[str, int, str]]:
    rows = _rows(browser, "overdue")
    if rows == [["No review is overdue."]]:
        return {}
    shown = {(r[0], r[3]): (r[4], int(r[5]), r[6]) for r in rows}
    assert len(shown) == len(rows), "a review is listed twice"
    return shown


def test_signed_in_as_05A_the_worklist_shows_05As_overdue_reviews_and_none_of_05Rs(
    system: System, world: oracle.World, staff_url: str
) -> None:
    active = oracle.active(world, AS_OF)
    overdue = {k: v for k, v in oracle.overdue(world, AS_OF).items() if k[0] in active}
    codes = [c["code"] for c in system.scenario.reference["commissioners"]]
    assert {"05A", "05R"} <= set(codes)
    mine = {k: v for k, v in overdue.items() if world.placements[k[0]].commissioner == "05A"}
    others_overdue = {k for k in overdue if world.placements[k[0]].commissioner != "05A"}
    assert mine and others_overdue, "the scenario should leave reviews overdue for 05A and for others"
    not_mine = {p.id for p in world.placements.values() if p.commissioner != "05A"}
    assert any(world.placements[p].commissioner == "05R" for p in not_mine)

    with Browser() as b:
        sign_in_by_keyboard(b, staff_url, staff_token("05A", "case-manager", sub="e2e-staff-view-casey"))
        assert b.text("#signed-in-org") == "05A"
        shown = _overdue_table(b)
        assert set(shown) == set(mine)
        for key, (due, days, level) in mine.items():
            assert shown[key] == (f"{due:%-d %b %Y}", days, f"level {level}"), key
        page = b.text("main")
        leaked = sorted(pid for pid in not_mine if pid in page)
        assert not leaked, f"other commissioners' placements shown to 05A: {leaked}"

    # The page's reads are the person's own: the placements service audited them under their name.
    audited = asyncio.run(_audit_rows(system.databases["placements"], "e2e-staff-view-casey"))
    overdue_reads = [r for r in audited if r["action"] == "GET /reviews/overdue"]
    assert overdue_reads and all((r["organisation"], r["role"]) == ("05A", "case-manager") for r in overdue_reads)
    assert {pid for pid, _ in mine} <= set(overdue_reads[-1]["refs"])

    # Each other commissioner's staff see their own list, as the oracle computes it (05R's is
    # empty in this scenario: its missed reviews are all of placements that have ended).
    for code in codes:
        if code == "05A":
            continue
        theirs = {k: v for k, v in overdue.items() if world.placements[k[0]].commissioner == code}
        with Browser() as b:
            sign_in_by_keyboard(b, staff_url, staff_token(code, "clinical-lead"))
            shown = _overdue_table(b)
            assert set(shown) == set(theirs), code
            assert not any(pid in b.text("main") for pid, _ in mine), code


def test_the_measures_page_shows_the_oracles_figures(system: System, world: oracle.World, staff_url: str) -> None:
    expected = measures_oracle.measures(world, system.scenario, dt.date(2026, 10, 1), dt.date(2026, 10, 31), AS_OF)
    assert "05A" in expected
    with Browser() as b:
        sign_in_by_keyboard(b, staff_url, staff_token("05A", "commissioner"), page="/measures?month=2026-10")
        assert "/measures?month=2026-10" in b.url()
        rows = {r[0]: r[1:] for r in _rows(b, "headline")}
        m = expected["05A"]
        assert rows["OAP days (bed days)"][0] == f"{m['oap_days']:,}"
        at_end = [f"{m['active_at_end']:,}", f"{m['inappropriate_active_at_end']:,}"]
        assert rows["Active at the period's end"] == at_end
        assert rows["Total recorded cost"][0] == pounds(m["total_cost_pence"], pennies=True)
        distance = {r[0]: int(r[1]) for r in _rows(b, "distance")}
        assert {k: v for k, v in distance.items() if v} == m["distance"]


def test_provider_and_ops_pages_show_what_their_roles_allow(system: System, staff_url: str) -> None:
    """Ops has no commissioner: the budget page says so instead of showing anyone's figures."""
    with Browser() as b:
        sign_in_by_keyboard(b, staff_url, staff_token("HOMEWARD", "ops"), page="/budget")
        assert "your role has none" in b.text("main")
