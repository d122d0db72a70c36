"""The budget service on the real Kafka and PostgreSQL: partner and placements events in
(with duplicates, out-of-order delivery and a refused sender), then the position, a placement's
ledger history, the emitted alerts and the dead letters.

Hand-computed figures, as of 10 April 2026 (financial year 2026-27), commissioner 05A:
* allocated £200,000.00 (mental health);
* P1, out of area with 8Z001 from 1 April at £545, back-dated to £500 from 5 April (the rate
  change arrives before the placement): spent 4 x 545 + 5 x 500 = £4,680.00, committed
  356 x 500 = £178,000.00;
* P2, local with RYG from 1 April to a planned 11 April at £350: spent 9 x 350 = £3,150.00,
  committed £350.00;
* forecast £186,180.00 (93.09%: the 90% threshold alerts once), headroom £13,820.00;
  out of area 4,680 / 7,830 = 59.8% of spend;
* a repatriation on 1 April from £620 to £350: £270 x 365 = £98,550.00 saved in the year, 9 days
  (£2,430.00) to date;
* invoice INV-1 for P1, 1-9 April, £4,905.00 against £4,680.00 accrued: £225.00 over a
  £100.00 tolerance, so InvoiceVarianceFound;
* then P3 (£600 from 10 April, 356 nights = £213,600.00) takes the forecast past 100%.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from homeward.budget.entrypoints.app import build_definition
from homeward.budget.entrypoints.http import build_routes
from homeward.budget.settings import BudgetSettings
from homeward.contracts import Event, new_event, parse_kafka, partner_source, service_source
from homeward.kit.clock import FixedClock
from homeward.kit.http import build_app
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, eventually, ops_headers, staff_headers

from .fakes import allocated, invoice, rate_changed, registered, repatriated

pytestmark = pytest.mark.integration
D = dt.date
TODAY = D(2026, 4, 10)
COMMISSIONER, PROVIDER, LOCAL = "05A", "8Z001", "RYG"
SENT_AT = dt.datetime(2026, 4, 2, 9, tzinfo=dt.UTC)


@pytest.fixture
async def service(database: str, kafka: KafkaProbe, ingress: ServiceRuntime) -> AsyncIterator[ServiceRuntime]:
    await kafka.create(partners=[COMMISSIONER, PROVIDER])
    settings = BudgetSettings(
        database_url=database,
        http_port=0,
        retry_backoff_s=0.01,
        batch_timeout_ms=50,
        outbox_poll_interval_s=0.2,
        scheduler_interval_s=3600,
        invoice_tolerance_pence=100_00,
        invoice_tolerance_percent=2,
        kafka=kafka.service_settings("budget").model_copy(update={"metadata_max_age_ms": 1000}),
    )
    runtime = ServiceRuntime(build_definition(settings), clock=FixedClock(TODAY))
    await runtime.start()
    yield runtime
    await runtime.stop()


def _partner(payload: Any, org: str, id: str | None = None) -> Event[Any]:
    return new_event(payload, source=partner_source(org), id=id, time=SENT_AT)


def _placements(payload: Any, id: str | None = None) -> Event[Any]:
    return new_event(
        payload, source=service_source("placements"), id=id, time=dt.datetime(2026, 4, 2, 9, tzinfo=dt.UTC)
    )


async def _get(runtime: ServiceRuntime, path: str, who: dict[str, str] | None = None, **params: str) -> httpx.Response:
    """GET as ``who`` (default: a case manager of COMMISSIONER)."""
    assert runtime.pool is not None
    app = build_app("budget", checks={}, routes=build_routes(runtime.pool, runtime.clock))
    headers = who if who is not None else staff_headers(COMMISSIONER, "case-manager")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://budget", headers=headers
    ) as client:
        return await client.get(path, params=params)


async def _position(runtime: ServiceRuntime) -> dict[str, Any]:
    r = await _get(runtime, f"/positions/{COMMISSIONER}", financial_year="2026-27", as_of=TODAY.isoformat())
    return r.json() if r.status_code == 200 else {}


async def test_events_in_give_hand_computed_positions_history_and_alerts(
    service: ServiceRuntime, kafka: KafkaProbe, database: str
) -> None:
    placements_topic = kafka.topics.internal("placements")
    allocation = _partner(allocated(COMMISSIONER, 20_000_000), COMMISSIONER)
    await kafka.send(kafka.topics.partner(COMMISSIONER), allocation)
    await kafka.send(kafka.topics.partner(COMMISSIONER), allocation)  # redelivered
    intruder = allocated(COMMISSIONER, 99_000_000, allocation_id="ALLOC-X")
    await kafka.send(kafka.topics.partner(PROVIDER), _partner(intruder, PROVIDER))  # a provider may not allocate

    # Out of order: P1's rate change arrives before P1 itself.
    await kafka.send(placements_topic, _placements(rate_changed("P1", D(2026, 4, 5), 50000, previous=54500)))
    p1 = _placements(registered("P1", start=D(2026, 4, 1), rate=54500, provider=PROVIDER))
    await kafka.send(placements_topic, p1)
    p2 = registered(
        "P2", start=D(2026, 4, 1), rate=35000, provider=LOCAL, out_of_area=False, planned_end=D(2026, 4, 11)
    )
    await kafka.send(placements_topic, _placements(p2))
    await kafka.send(placements_topic, p1)  # duplicate
    saving = repatriated("P0", on=D(2026, 4, 1), from_rate=62000, to_rate=35000)
    await kafka.send(placements_topic, _placements(saving))
    await kafka.send(
        kafka.topics.partner(PROVIDER),
        _partner(invoice("INV-1", "P1", D(2026, 4, 1), D(2026, 4, 9), 490_500, provider=PROVIDER), PROVIDER),
    )

    async def settled() -> bool:
        pos = await _position(service)
        return (pos.get("forecast_outturn_pence"), pos.get("allocated_pence"), pos.get("savings_year_pence")) == (
            18_618_000,
            20_000_000,
            365 * 27000,
        )

    assert await eventually(settled, timeout=60)
    await service.run_jobs_once()
    await service.run_jobs_once()  # a second run posts nothing new

    pos = await _position(service)
    assert {k: pos[k] for k in pos if k.endswith("_pence") or k.endswith("_percent")} == {
        "allocated_pence": 20_000_000,
        "spent_pence": 468_000 + 315_000,
        "committed_pence": 17_800_000 + 35_000,
        "forecast_outturn_pence": 18_618_000,
        "headroom_pence": 1_382_000,
        "out_of_area_spent_pence": 468_000,
        "local_spent_pence": 315_000,
        "out_of_area_share_percent": 59.8,
        "local_share_percent": 40.2,
        "savings_to_date_pence": 9 * 27000,
        "savings_year_pence": 365 * 27000,
        "savings_cumulative_pence": 9 * 27000,
    }
    assert pos["by_programme"]["mental_health"]["forecast_outturn_pence"] == 18_618_000

    providers = (await _get(service, f"/providers/{COMMISSIONER}/spend", financial_year="2026-27")).json()
    assert [(p["provider"], p["out_of_area"], p["spent_pence"]) for p in providers["providers"]] == [
        (PROVIDER, True, 468_000),
        (LOCAL, False, 315_000),
    ]

    history = (await _get(service, "/placements/P1/ledger")).json()
    purposes = [t["purpose"] for t in history["transfers"]]
    assert purposes[:3] == ["commitment", "void", "commitment"]  # registered, then the parked change re-priced it
    assert purposes.count("accrual") == 1  # 1-9 April, one month's step
    stream = history["streams"][0]
    assert stream["rates"] == [
        {"effective_date": "2026-04-01", "daily_rate_pence": 54500},
        {"effective_date": "2026-04-05", "daily_rate_pence": 50000},
    ]
    assert (stream["spent_pence"], stream["committed_pence"]) == (468_000, 17_800_000)
    assert history["invoices"][0]["variance_pence"] == 22_500
    assert stream["details"]["patient_ref"].startswith("pt_")

    # Scopes: finance see the ledger without patient references; another commissioner, a
    # provider and nobody signed in see none of it; ops see every position but no ledger.
    as_finance = (await _get(service, "/placements/P1/ledger", staff_headers(COMMISSIONER, "finance"))).json()
    assert as_finance["transfers"] == history["transfers"] and "patient_ref" not in json.dumps(as_finance)
    other, provider = staff_headers("05R", "finance"), staff_headers(PROVIDER, "provider")
    for path in (
        f"/positions/{COMMISSIONER}",
        f"/providers/{COMMISSIONER}/spend",
        "/placements/P1/ledger",
        f"/invoices/{COMMISSIONER}",
    ):
        for who in (other, provider):
            denied = await _get(service, path, who)
            assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json", path
        assert (await _get(service, path, {})).status_code == 401
    assert (await _get(service, "/positions", other)).json()["positions"] == []
    mine = (await _get(service, "/positions", staff_headers(COMMISSIONER, "finance"))).json()["positions"]
    assert [p["commissioner"] for p in mine] == [COMMISSIONER]
    overview = (await _get(service, "/positions", ops_headers())).json()["positions"]
    assert COMMISSIONER in [p["commissioner"] for p in overview]
    assert (await _get(service, f"/positions/{COMMISSIONER}", ops_headers())).status_code == 200
    assert (await _get(service, "/placements/P1/ledger", ops_headers())).status_code == 403
    assert (await _get(service, f"/invoices/{COMMISSIONER}", ops_headers())).status_code == 403
    trail = await service.pool.fetch("SELECT organisation, role, action, refs FROM audit_log ORDER BY id")  # type: ignore[union-attr]
    ledger_reads = [(r["organisation"], r["role"]) for r in trail if r["action"] == "GET /placements/P1/ledger"]
    assert ledger_reads == [(COMMISSIONER, "case-manager"), (COMMISSIONER, "finance")]
    assert all(list(r["refs"]) == ["P1"] for r in trail if r["action"] == "GET /placements/P1/ledger")

    # Past 100%: P3 from today. The thresholds job judges the ledger as it stands once P3 is in it.
    await kafka.send(placements_topic, _placements(registered("P3", start=TODAY, rate=60000, provider=PROVIDER)))

    async def past_100() -> bool:
        return (await _position(service)).get("forecast_outturn_pence", 0) > 20_000_000

    assert await eventually(past_100, timeout=60)
    await service.run_jobs_once()

    def alert_types(records: list[Any]) -> list[tuple[Any, ...]]:
        out = []
        for r in records:
            e = parse_kafka(r.value, r.headers)
            d = e.data
            if e.type.startswith("homeward.BudgetThresholdBreached"):
                out.append(("threshold", d.threshold_percent, d.programme and d.programme.value))
            else:
                out.append(("variance", d.invoice_id, d.variance_pence, d.tolerance_pence))
        return sorted(out, key=str)

    budget_topic = kafka.topics.internal("budget")
    expected = sorted(
        [
            ("threshold", 90, None),
            ("threshold", 90, "mental_health"),
            ("threshold", 100, None),
            ("threshold", 100, "mental_health"),
            ("variance", "INV-1", 22_500, 10_000),
        ],
        key=str,
    )
    records = await kafka.read(budget_topic, until=lambda r: len(r) >= 5, timeout=60, settle=1.0)
    assert alert_types(records) == expected
    # The variance is dated by the fact that caused it (the invoice), not by when the budget
    # handled it (business time); a threshold alert is the thresholds job's own finding, dated
    # when the job judged the ledger.
    times = {parse_kafka(r.value, r.headers).type.split(".")[1]: parse_kafka(r.value, r.headers).time for r in records}
    assert times == {"InvoiceVarianceFound": SENT_AT, "BudgetThresholdBreached": service.clock.now()}

    dlq = await kafka.read(kafka.topics.dlq("budget"), until=lambda r: len(r) >= 1, timeout=60)
    assert [dict(r.headers)["homeward-dlq-reason"] for r in dlq] == [b"not-authorised"]

    check = await _get(service, "/check", ops_headers())
    assert check.status_code == 200, check.json()
    assert check.json()["ok"] and check.json()["streams"] == 4

    conn = await asyncpg.connect(database)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name ILIKE '%nhs%'"
        )
        dump = json.dumps([dict(r) for r in await conn.fetch("SELECT details FROM streams")])
    finally:
        await conn.close()
    assert columns == []
    assert "nhs" not in dump.lower()
    assert not re.search(r"(?<!\d)\d{10}(?!\d)", dump)  # nothing shaped like an NHS number


async def test_bad_requests_are_answered_with_the_reason_and_the_asyncapi_lists_the_alerts(
    service: ServiceRuntime,
) -> None:
    doc = json.dumps(service.asyncapi())
    assert "BudgetThresholdBreached" in doc and "InvoiceVarianceFound" in doc
    r = await _get(service, f"/positions/{COMMISSIONER}", as_of="10/04/2026")
    assert r.status_code == 400 and "as_of" in r.json()["error"]
    r = await _get(service, "/positions", financial_year="2026-28")
    assert r.status_code == 400 and "financial year" in r.json()["error"]
    assert (await _get(service, "/positions/QQQ", ops_headers())).status_code == 404
    assert (await _get(service, "/positions/QQQ")).status_code == 403  # not the case manager's
    assert (await _get(service, "/placements/NOPE/ledger")).status_code == 404
