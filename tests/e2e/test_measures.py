"""The NHS out-of-area measures of the running placements service (API and `homeward measures`)
against the oracle's independent computation from the generated scenario."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import subprocess
import sys

import httpx
import pytest
from homeward.testing import ops_headers, staff_headers, staff_token

from . import measures_oracle, oracle
from .conftest import AS_OF, System

pytestmark = pytest.mark.e2e

PERIODS = [
    ("a month", {"month": "2026-10"}, dt.date(2026, 10, 1), dt.date(2026, 10, 31)),
    ("the month to date", {"month": "2026-11"}, dt.date(2026, 11, 1), dt.date(2026, 11, 30)),
    ("a quarter", {"from": "2026-07-01", "to": "2026-09-30"}, dt.date(2026, 7, 1), dt.date(2026, 9, 30)),
    ("12 months", {"from": "2025-11-01", "to": "2026-10-31"}, dt.date(2025, 11, 1), dt.date(2026, 10, 31)),
]


@pytest.fixture(scope="module")
def world(system: System) -> oracle.World:
    return oracle.replay(system.scenario)


def _measures(system: System, headers: dict[str, str], **params: str) -> httpx.Response:
    return httpx.get(
        system.url("placements", "/measures"),
        params={"as_of": AS_OF.isoformat(), **params},
        headers=headers,
        timeout=60,
    )


@pytest.mark.parametrize(("name", "params", "first", "last"), PERIODS, ids=[p[0] for p in PERIODS])
def test_measures_match_the_oracle(
    system: System, world: oracle.World, name: str, params: dict[str, str], first: dt.date, last: dt.date
) -> None:
    expected = measures_oracle.measures(world, system.scenario, first, last, AS_OF)
    r = _measures(system, ops_headers(), **params)  # every commissioner's figures: the overview
    assert r.status_code == 200, r.text
    got = r.json()
    assert measures_oracle.as_reported(got) == expected
    assert got["period"]["complete"] == (last < AS_OF)
    assert sum(m["oap_days"] for m in expected.values()) > 0, "the scenario should have people away"
    assert any(m["ended"] for m in expected.values()) or name == "the month to date"


def test_commissioner_staff_see_their_own_measures_only(system: System, world: oracle.World) -> None:
    codes = [c["code"] for c in system.scenario.reference["commissioners"]]
    expected = measures_oracle.measures(world, system.scenario, dt.date(2026, 10, 1), dt.date(2026, 10, 31), AS_OF)
    assert len(codes) > 1
    for code in codes:
        own = staff_headers(code, "case-manager")
        r = _measures(system, own, month="2026-10")  # no commissioner asked: their own
        assert r.status_code == 200, r.text
        got = r.json()
        assert list(got["commissioners"]) == [code]
        assert measures_oracle.as_reported(got).get(code) == expected.get(code) or (
            code not in expected and got["commissioners"][code]["all"]["oap_days"] == 0
        )
        other = next(c for c in codes if c != code)
        denied = _measures(system, own, month="2026-10", commissioner=other)
        assert denied.status_code == 403, denied.text
        assert denied.headers["content-type"].startswith("application/problem+json")
        finance = _measures(system, staff_headers(code, "finance"), month="2026-10")
        assert finance.status_code == 200 and list(finance.json()["commissioners"]) == [code]


def test_provider_staff_see_the_measures_of_their_own_sites(system: System, world: oracle.World) -> None:
    away = [p for p in world.placements.values() if p.out_of_area]
    provider = max({p.provider for p in away}, key=lambda prov: sum(p.provider == prov for p in away))
    theirs = oracle.World({k: p for k, p in world.placements.items() if p.provider == provider}, {})
    expected = measures_oracle.measures(theirs, system.scenario, dt.date(2026, 10, 1), dt.date(2026, 10, 31), AS_OF)
    everyone = measures_oracle.measures(world, system.scenario, dt.date(2026, 10, 1), dt.date(2026, 10, 31), AS_OF)
    assert expected and expected != everyone
    r = _measures(system, staff_headers(provider, "provider"), month="2026-10")
    assert r.status_code == 200, r.text
    assert measures_oracle.as_reported(r.json()) == expected


def test_measures_need_a_valid_token(system: System) -> None:
    assert _measures(system, {}, month="2026-10").status_code == 401
    wrong_audience = {"Authorization": f"Bearer {staff_token('05A', 'case-manager', aud='someone-else')}"}
    assert _measures(system, wrong_audience, month="2026-10").status_code == 401


def test_the_measures_command_prints_the_oracles_figures_as_csv(system: System, world: oracle.World) -> None:
    env = dict(os.environ)
    env.update({f"HOMEWARD_{svc.upper()}_URL": system.url(svc, "") for svc in system.ports})
    env["HOMEWARD_TOKEN"] = ops_headers()["Authorization"].removeprefix("Bearer ")
    done = subprocess.run(
        [sys.executable, "-m", "homeward.cli", "measures", "--month", "2026-10", "--as-of", AS_OF.isoformat(), "--csv"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["commissioner"]: r for r in csv.DictReader(io.StringIO(done.stdout))}
    expected = measures_oracle.measures(world, system.scenario, dt.date(2026, 10, 1), dt.date(2026, 10, 31), AS_OF)
    assert set(rows) == {*expected, "total"}
    for code, m in expected.items():
        assert int(rows[code]["oap_days"]) == m["oap_days"]
        assert int(rows[code]["total_cost_pence"]) == m["total_cost_pence"]
        assert int(rows[code]["active_at_end"]) == m["active_at_end"]
        assert int(rows[code]["reason_10_placements"]) == m["reasons"].get("10", 0)
    assert int(rows["total"]["oap_days"]) == sum(m["oap_days"] for m in expected.values())
    table = subprocess.run(
        [sys.executable, "-m", "homeward.cli", "measures", "--month", "2026-10", "--as-of", AS_OF.isoformat()],
        env={**env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert table.returncode == 0, table.stderr
    assert "OAP days" in table.stdout and f"{sum(m['oap_days'] for m in expected.values()):,}" in table.stdout
