"""The staff view in headless Chromium, over stand-in services: sign-in by keyboard, what each
page shows and asks the services, the accessibility check (axe-core), CSV downloads, cookies,
and refusals. The real services behind it are tested end to end in tests/e2e/test_staff_view.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from homeward.kit.clock import FixedClock
from homeward.testing import free_port, staff_token

from homeward.staff import assets
from homeward.staff.app import COOKIE, PAGES, build_app
from homeward.staff.settings import StaffSettings

from .cdp import Browser

TODAY = dt.date(2026, 11, 20)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    return assets.install(dev=True)  # npm ci once; again only when the lock file changes


@pytest.fixture(scope="session")
def axe_source(node_modules: Path) -> Path:
    return node_modules / "axe-core" / "axe.min.js"


def _overdue(pid: str, commissioner: str, days: int, level: int) -> dict[str, Any]:
    return {
        "placement_id": pid,
        "patient_ref": f"ref-{pid}",
        "commissioner": commissioner,
        "provider_site": "8Z00001",
        "review_type": "oversight_visit",
        "due_date": (TODAY - dt.timedelta(days=days)).isoformat(),
        "days_overdue": days,
        "escalation_level": level,
    }


@dataclass
class FakeServices:
    """The services' read APIs as the staff view calls them; records every request."""

    requests: list[httpx.Request] = field(default_factory=list)
    deny: set[str] = field(default_factory=set)  # paths answered 403

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, q = request.url.path, request.url.params
        if path in self.deny:
            return httpx.Response(403, json={"title": "Forbidden", "detail": "not for your role"})
        commissioner = q.get("commissioner")
        if path == "/reviews/overdue":
            rows = [_overdue("PL-A1", "05A", 50, 3), _overdue("PL-A2", "05A", 3, 1), _overdue("PL-R1", "05R", 9, 1)]
            return httpx.Response(200, json={"reviews": [r for r in rows if r["commissioner"] == commissioner]})
        if path == "/reviews/upcoming":
            return httpx.Response(200, json={"reviews": []})
        if path == "/placements":
            p = {
                "placement_id": "PL-A1",
                "patient_ref": "ref-PL-A1",
                "provider_site": "8Z00001",
                "bed_type": "adult_acute",
                "start_date": "2026-08-22",
                "distance_from_home_km": 180,
                "daily_rate_pence": 54_500,
                "out_of_area_reason": "10",
                "inappropriate": True,
            }
            return httpx.Response(200, json={"placements": [p]})
        if path == "/repatriation-candidates":
            return httpx.Response(200, json={"candidates": []})
        if path == "/repatriations":
            move = {
                "from_placement_id": "PL-A9",
                "to_placement_id": "PL-A10",
                "patient_ref": "ref-9",
                "repatriated_on": "2026-06-01",
                "from_daily_rate_pence": 62_000,
                "to_daily_rate_pence": 41_000,
            }
            return httpx.Response(200, json={"repatriations": [move]})
        if path.startswith("/positions/"):
            month = int(q["as_of"][5:7])
            n = (month - 3) if month >= 4 else month + 9
            return httpx.Response(
                200,
                json={
                    "allocated_pence": 50_000_000,
                    "spent_pence": 1_000_000 * n,
                    "out_of_area_spent_pence": 600_000 * n,
                    "out_of_area_share_percent": 60.0,
                    "forecast_outturn_pence": 12_000_000,
                    "savings_to_date_pence": 50_000 * n,
                },
            )
        if path == "/unmet-need":
            row = {"bed_type": "adult_acute", "area": "05A", "month": "2026-10", "count": 2, "out_of_area": 3}
            return httpx.Response(200, json={"rows": [{**row, "by_reason": {"10": 2, "14": 1}}]})
        if path == "/measures":
            return httpx.Response(200, json=_measures(q.get("month") or "2026-10"))
        if path == "/notifications/suppressed" and q.get("org") == "05A":
            row = {"recorded_at": "2026-11-20T12:00:00Z", "recipient": "case.manager@05a.nhs.invalid"}
            row |= {"role": "case_manager", "subject": "Action needed by 10 Nov 2023", "due_by": "2023-11-10"}
            row |= {"reference": "PLC-05A-000001", "suppressed_reason": "due 10 Nov 2023: long past"}
            return httpx.Response(200, json={"notifications": [row]})
        return httpx.Response(404, json={"error": "no such route"})

    def asked(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def _measures(month: str) -> dict[str, Any]:
    bands = {
        "length_of_stay_nights": ["1-7", "8-14", "15-30", "31-90", "91+"],
        "distance_km": ["<25", "25-50", "50-100", "100-200", "200-300", "300+", "unknown"],
        "reason_codes": ["10", "11", "12", "13", "14", "99", "not stated"],
    }
    figures = {
        "active_at_end": 7,
        "started": 2,
        "ended": 1,
        "oap_days": 211,
        "total_cost_pence": 11_499_500,
        "average_daily_cost_pence": 54_500,
        "active_in_period": 8,
    }
    m = {
        "all": figures,
        "inappropriate": {**figures, "active_at_end": 5},
        "appropriate": {"placements": 3, "oap_days": 60},
        "length_of_stay": dict.fromkeys(bands["length_of_stay_nights"], 0) | {"31-90": 1},
        "distance": dict.fromkeys(bands["distance_km"], 0) | {"100-200": 8},
        "by_reason": {c: {"placements": 0, "oap_days": 0} for c in bands["reason_codes"]}
        | {"10": {"placements": 5, "oap_days": 151}},
    }
    return {
        "period": {"label": month, "from": f"{month}-01", "to": f"{month}-31", "measured_to": f"{month}-31"}
        | {"complete": True},
        "bands": bands,
        "commissioners": {"05A": m},
        "total": m,
    }


@dataclass
class Staff:
    url: str
    services: FakeServices

    def get(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, follow_redirects=False, timeout=30, **kw)


@pytest.fixture
def staff(node_modules: Path) -> Iterator[Staff]:
    fake = FakeServices()
    app = build_app(StaffSettings(), FixedClock(TODAY), httpx.MockTransport(fake), assets=node_modules)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield Staff(f"http://127.0.0.1:{port}", fake)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sign_in_by_keyboard(browser: Browser, base: str, token: str, page: str = "/") -> None:
    """Open a page, land on the sign-in page, reach the token box and the button with Tab."""
    browser.goto(base + page)
    assert "/sign-in" in browser.url()
    for _ in range(10):
        browser.press("Tab")
        if browser.focused()["id"] == "token":
            break
    assert browser.focused()["id"] == "token", "the token box is reachable with Tab"
    browser.type_text(token)
    browser.press("Tab")
    assert browser.focused() == {"tag": "button", "id": "", "text": "Sign in", "href": None}
    browser.press_and_load("Enter")


def test_signed_in_by_keyboard_the_worklist_shows_the_organisations_overdue_reviews(staff: Staff) -> None:
    with Browser() as b:
        sign_in_by_keyboard(b, staff.url, staff_token("05A", "case-manager", name="Casey Jones"))
        assert b.url() == staff.url + "/"
        assert "Casey Jones" in b.text("#signed-in-as") and b.text("#signed-in-org") == "05A"
        overdue = b.text("#overdue")
        assert "PL-A1" in overdue and "PL-A2" in overdue and "PL-R1" not in overdue
        assert "level 3" in overdue and "50" in overdue
        # The cookie is the token, out of the page's reach.
        assert b.evaluate("document.cookie") == ""
    asked = staff.services.asked("/reviews/overdue")
    assert asked and all(r.url.params["commissioner"] == "05A" for r in asked)
    token_sent = {r.headers["authorization"] for r in asked}
    assert len(token_sent) == 1 and next(iter(token_sent)).startswith("Bearer ey")


def test_each_role_is_offered_the_pages_its_services_answer(staff: Staff) -> None:
    finance = staff.get("/budget", staff_token("05A", "finance"))
    assert 'href="/measures"' in finance.text and 'href="/placements"' not in finance.text
    landing = staff.get("/", staff_token("05A", "finance"))
    assert landing.status_code == 303 and landing.headers["location"] == "/budget"
    provider = staff.get("/", staff_token("8Z000", "provider"))
    assert provider.status_code == 200 and 'href="/budget"' not in provider.text
    assert staff.get("/", staff_token("HOMEWARD", "ops")).headers["location"] == "/measures"


def test_every_page_passes_axe_and_reaches_its_links_by_keyboard(staff: Staff, axe_source: Path) -> None:
    token = staff_token("05A", "commissioner")
    with Browser() as b:
        sign_in_by_keyboard(b, staff.url, token)
        for path, title, _ in PAGES:
            b.goto(staff.url + path)
            assert b.text("h1") == title
            violations = b.axe(axe_source)
            assert violations == [], f"{path}: {json.dumps(violations, indent=1)}"
            # Tab order: the skip link first, then every navigation link, each reachable.
            b.evaluate("document.activeElement.blur()")
            reached = []
            for _ in range(12):
                b.press("Tab")
                reached.append(b.focused())
            assert reached[0]["text"] == "Skip to main content"
            assert {f["href"] for f in reached} >= {p for p, _, _ in PAGES}
        b.goto(staff.url + "/sign-in")
        assert b.axe(axe_source) == []
        # The check finds a fault when there is one: a text box without a label.
        b.evaluate("document.querySelector('main').insertAdjacentHTML('beforeend', '<input type=text>')")
        assert "label" in {v["id"] for v in b.axe(axe_source)}


def test_every_table_has_a_csv_download_with_its_rows(staff: Staff) -> None:
    token = staff_token("05A", "commissioner")
    seen = 0
    for path, _, _ in PAGES:
        page = staff.get(path, token)
        assert page.status_code == 200, path
        tables = page.text.count('<table class="nhsuk-table"')
        links = [line for line in page.text.splitlines() if ".csv" in line and "Download" in line]
        assert len(links) == tables, path
        for link in links:
            href = link.split('href="')[1].split('"')[0].replace("&amp;", "&")
            r = staff.get(href, token)
            assert r.status_code == 200, href
            assert r.headers["content-type"].startswith("text/csv")
            assert "attachment" in r.headers["content-disposition"]
            rows = list(csv.reader(io.StringIO(r.text)))
            assert len(rows) >= 1 and all(len(row) == len(rows[0]) for row in rows)
            seen += 1
    assert seen >= 8
    worklist = list(csv.DictReader(io.StringIO(staff.get("/worklist/overdue.csv", token).text)))
    assert [r["Placement"] for r in worklist] == ["PL-A1", "PL-A2"]
    away = list(csv.DictReader(io.StringIO(staff.get("/placements/out-of-area.csv", token).text)))
    assert away[0]["Daily cost (£)"] == "545.00" and away[0]["Days away"] == str((TODAY - dt.date(2026, 8, 22)).days)


def test_the_pages_show_what_the_services_answer(staff: Staff) -> None:
    token = staff_token("05A", "commissioner")
    placements = staff.get("/placements", token).text
    assert "PL-A1" in placements and "£545.00" in placements and "10 no local bed" in placements
    assert "90" in placements  # days away, 22 August to 20 November
    budget = staff.get("/budget", token).text
    assert '<svg id="budget-chart"' in budget and '<title id="budget-chart-title">' in budget
    assert budget.count("<rect") >= 16  # two stacked bars for each month April to November
    positions = staff.get("/budget/positions.csv", token).text.splitlines()
    assert len(positions) == 1 + 8 and positions[1].startswith("2026-04,10000.00,6000.00,")
    assert [r.url.params["as_of"] for r in staff.services.asked("/positions/05A")][-8:] == [
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
        "2026-11-20",
    ]
    measures = staff.get("/measures", token).text
    assert "OAP days (bed days)" in measures and "211" in measures and "£114,995.00" in measures
    assert staff.services.asked("/measures")[-1].url.params["month"] == "2026-10"  # the last whole month
    headline = {r["Measure"]: r for r in csv.DictReader(io.StringIO(staff.get("/measures/headline.csv", token).text))}
    assert headline["Total recorded cost (£)"]["All out of area"] == "114995.00"
    assert headline["OAP days (bed days)"]["Inappropriate"] == "211"
    ops = staff.get("/measures", staff_token("HOMEWARD", "ops")).text
    assert 'id="by-commissioner"' in ops and 'id="by-commissioner"' not in measures
    staff.get("/measures?month=2026-09", token)
    assert staff.services.asked("/measures")[-1].url.params["month"] == "2026-09"
    assert "2026-10" in staff.get("/unmet-need", token).text
    alerts = staff.get("/alerts", token).text
    assert "Action needed by 10 Nov 2023" in alerts and "due 10 Nov 2023: long past" in alerts
    assert "PL-A10" in staff.get("/repatriation", token).text


def test_without_a_valid_token_every_page_sends_you_to_sign_in(staff: Staff) -> None:
    for path, _, _ in PAGES:
        r = staff.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/sign-in?next="), path
    assert staff.get("/worklist/overdue.csv").status_code == 303
    long_ago = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    expired = staff_token("05A", "case-manager", ttl=dt.timedelta(seconds=1), now=long_ago)
    assert staff.get("/", expired).status_code == 303
    assert staff.get("/", staff_token("05A", "case-manager", aud="another-service")).status_code == 303
    assert staff.services.requests == []  # nothing was asked of the services


def test_a_refused_token_is_said_so_and_sets_no_cookie(staff: Staff) -> None:
    r = httpx.post(staff.url + "/sign-in", data={"token": "not-a-token", "next": "/"}, timeout=30)
    assert r.status_code == 401
    assert "There is a problem" in r.text and "not a JWT" in r.text
    assert COOKIE not in r.headers.get("set-cookie", "")


def test_the_cookie_is_httponly_strict_and_secure_over_https(node_modules: Path) -> None:
    from starlette.testclient import TestClient

    token = staff_token("05A", "case-manager")
    app = build_app(StaffSettings(), FixedClock(TODAY), httpx.MockTransport(FakeServices()), assets=node_modules)
    for base, secure in (("http://staff.local", False), ("https://staff.local", True)):
        with TestClient(app, base_url=base) as client:
            r = client.post("/sign-in", data={"token": token, "next": "/placements"}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/placements"
            cookie = r.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}={token};")
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert ("Secure" in cookie) is secure
            out = client.post("/sign-out", follow_redirects=False)
            assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]


def test_sign_in_never_redirects_to_another_site(node_modules: Path) -> None:
    from starlette.testclient import TestClient

    token = staff_token("05A", "case-manager")
    app = build_app(StaffSettings(), FixedClock(TODAY), httpx.MockTransport(FakeServices()), assets=node_modules)
    with TestClient(app) as client:
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            r = client.post("/sign-in", data={"token": token, "next": target}, follow_redirects=False)
            assert r.headers["location"] == "/", target


def test_a_service_refusal_is_shown_not_hidden(staff: Staff) -> None:
    staff.services.deny.add("/reviews/overdue")
    r = staff.get("/", staff_token("05A", "case-manager"))
    assert r.status_code == 403 and "not for your role" in r.text


def test_pages_load_nothing_from_elsewhere(staff: Staff) -> None:
    token = staff_token("05A", "case-manager")
    page = staff.get("/", token)
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'none'" in page.headers["content-security-policy"]
    css = staff.get("/static/staff.css")
    assert css.status_code == 200 and ".nhsuk-table" in css.text
    assert "https://" not in css.text and "http://" not in css.text  # the CDN webfont rules are dropped
    assert staff.get("/assets/images/nhsuk-icon-arrow-down.svg").status_code == 200
    assert staff.get("/assets/../../package.json").status_code == 404
