"""A provider's report is charged only once its commissioner agrees it, across the real path:
partner topics -> ingress -> placements -> budget, on the real Kafka and PostgreSQL
(docs/authority.md; issue 12, where a provider charged a commissioner for a placement by
stating it).

Provider 8Z000 reports placement P for commissioner 05A from 1 April 2026 at £545.00 a night,
raises it to £560.00 from 15 April and invoices April; nothing of it reaches 05A's ledger. When
05A agrees, the budget commits the whole schedule at once, the parked rate change included:
14 nights x £545 + 351 nights x £560 = £204,190.00 for 2026-27, and the invoice is matched."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from homeward.budget.entrypoints.app import build_definition as budget_definition
from homeward.budget.settings import BudgetSettings
from homeward.contracts import new_event, partner_source
from homeward.contracts.events import (
    BudgetAllocated,
    InvoiceReceived,
    Payload,
    PlacementAgreed,
    PlacementMade,
    PlacementRateChanged,
)
from homeward.kit.clock import FixedClock
from homeward.kit.service import ServiceRuntime
from homeward.placements.entrypoints.app import build_definition as placements_definition
from homeward.placements.settings import PlacementsSettings
from homeward.testing import Infra, KafkaProbe, eventually, scratch_database, service_tuning

pytestmark = pytest.mark.integration

COMMISSIONER, PROVIDER = "05A", "8Z000"
TODAY = dt.date(2026, 5, 10)
FORECAST = 14 * 54_500 + 351 * 56_000


@pytest.fixture
async def services(
    infra: Infra, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> AsyncIterator[tuple[str, str]]:
    """Placements (on ``database``) and budget (on a database of its own), as of 10 May 2026."""
    await kafka.create(partners=[COMMISSIONER, PROVIDER])
    async with scratch_database(infra, "t_budget") as budget_db:
        placements = ServiceRuntime(
            placements_definition(PlacementsSettings(database_url=database, **service_tuning(kafka, "placements"))),
            clock=FixedClock(TODAY),
        )
        budget = ServiceRuntime(
            budget_definition(BudgetSettings(database_url=budget_db, **service_tuning(kafka, "budget"))),
            clock=FixedClock(TODAY),
        )
        await placements.start()
        await budget.start()
        try:
            yield database, budget_db
        finally:
            await budget.stop()
            await placements.stop()


def _payload(cls: type[Payload], **fields: Any) -> Any:
    """A payload as a partner writes it: JSON, validated by the contract."""
    return cls.model_validate_json(json.dumps(fields))


async def _rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def test_a_providers_placement_reaches_the_ledger_only_once_the_commissioner_agrees_it(
    services: tuple[str, str], kafka: KafkaProbe
) -> None:
    placements_db, budget_db = services

    async def send(org: str, payload: Any, day: str) -> None:
        at = dt.datetime.fromisoformat(f"{day}T10:00:00+00:00")
        await kafka.send(kafka.topics.partner(org), new_event(payload, source=partner_source(org), time=at))

    allocation = _payload(
        BudgetAllocated,
        allocation_id="ALLOC-05A-2026-27",
        commissioner=COMMISSIONER,
        financial_year="2026-27",
        programme="mental_health",
        amount_pence=30_000_000,
        source="nhs_england",
    )
    await send(COMMISSIONER, allocation, "2026-03-20")
    made = _payload(
        PlacementMade,
        placement_id="P-8Z-1",
        nhs_number="9990000026",
        commissioner=COMMISSIONER,
        provider=PROVIDER,
        provider_site="8Z00001",
        provider_site_area="QAB",
        independent_provider=True,
        bed_type="adult_acute",
        cohort="mental_health",
        age_band="adult",
        legal_status="mha_s3",
        programme="mental_health",
        start_date="2026-04-01",
        daily_rate_pence=54_500,
        out_of_area_reason="10",
    )
    await send(PROVIDER, made, "2026-04-01")
    uplift = _payload(PlacementRateChanged, placement_id="P-8Z-1", daily_rate_pence=56_000, effective_date="2026-04-15")
    await send(PROVIDER, uplift, "2026-04-16")
    april = _payload(
        InvoiceReceived,
        invoice_id="INV-8Z-2026-04",
        provider=PROVIDER,
        commissioner=COMMISSIONER,
        placement_id="P-8Z-1",
        period_start="2026-04-01",
        period_end="2026-04-30",
        amount_pence=14 * 54_500 + 16 * 56_000,
    )
    await send(PROVIDER, april, "2026-05-03")

    # Placements has the report, and has passed the rate change on; the budget keeps both aside.
    async def waiting() -> bool:
        parked = await _rows(
            budget_db, "SELECT event_type FROM parking_lot WHERE awaiting = 'placement:P-8Z-1' AND status = 'parked'"
        )
        invoice = await _rows(budget_db, "SELECT status FROM invoices WHERE invoice_id = 'INV-8Z-2026-04'")
        allocated = await _rows(budget_db, "SELECT count(*) FROM transfers WHERE purpose = 'allocation'")
        return len(parked) == 1 and invoice == [("parked",)] and allocated == [(1,)]

    assert await eventually(waiting, timeout=60)
    assert await _rows(placements_db, "SELECT agreed_by, released FROM placements") == [(None, False)]
    assert await _rows(budget_db, "SELECT count(*) FROM transfers WHERE placement_id = 'P-8Z-1'") == [(0,)]
    assert await _rows(budget_db, "SELECT count(*) FROM streams") == [(0,)]

    await send(
        COMMISSIONER,
        PlacementAgreed(placement_id="P-8Z-1", commissioner=COMMISSIONER, daily_rate_pence=54_500),
        "2026-05-04",
    )

    committed = """SELECT coalesce(sum(amount), 0) FROM transfers
                   WHERE placement_id = 'P-8Z-1' AND kind = 'pending' AND purpose = 'commitment'"""
    voided = """SELECT coalesce(sum(v.amount), 0) FROM transfers v
                WHERE v.placement_id = 'P-8Z-1' AND v.kind = 'void_pending'"""

    async def charged() -> bool:
        [(pending,)] = await _rows(budget_db, committed)
        [(void,)] = await _rows(budget_db, voided)
        invoice = await _rows(budget_db, "SELECT status FROM invoices WHERE invoice_id = 'INV-8Z-2026-04'")
        return pending - void == FORECAST and invoice == [("matched",)]

    assert await eventually(charged, timeout=60)
    assert await _rows(budget_db, "SELECT status, count(*) FROM parking_lot GROUP BY 1") == [("applied", 1)]
    who = await _rows(
        budget_db,
        "SELECT DISTINCT cause_type, asserted_by, principal FROM ("
        " SELECT CASE WHEN purpose = 'allocation' THEN 'allocation' ELSE 'placement' END AS cause_type,"
        " asserted_by, principal FROM transfers) t ORDER BY 1, 2",
    )
    # The registration is 05A's (it agreed); the rate it re-priced with was stated by 8Z000.
    assert who == [
        ("allocation", COMMISSIONER, f"User:{kafka.topics.namespace}{COMMISSIONER}"),
        ("placement", COMMISSIONER, f"User:{kafka.topics.namespace}{COMMISSIONER}"),
        ("placement", PROVIDER, f"User:{kafka.topics.namespace}{PROVIDER}"),
    ]
    [(variance,)] = await _rows(budget_db, "SELECT variance_pence FROM invoices")
    assert variance == 0
