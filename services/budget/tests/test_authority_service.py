"""Who may move a commissioner's money, on the real Kafka and PostgreSQL (docs/authority.md).

Issue 12's attacks: provider 8Z000 added £10bn to 05A's allocation by naming itself as the
source; a provider's invoice at any price was matched at once. Now only 05A (or 05H, the lead
commissioner it delegates to here) allocates, an implausible invoice is held until 05A confirms
it, and every transfer records who asserted it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from homeward.budget.entrypoints.app import build_definition
from homeward.budget.settings import BudgetSettings
from homeward.contracts import new_event, parse_kafka, partner_source, service_source
from homeward.contracts.events import InvoiceConfirmed
from homeward.kit.clock import FixedClock
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, eventually, service_tuning

from .fakes import allocated, invoice, registered

pytestmark = pytest.mark.integration
D = dt.date
TODAY = D(2026, 5, 10)
COMMISSIONER, LEAD, PROVIDER = "05A", "05H", "8Z000"
SENT_AT = dt.datetime(2026, 5, 2, 9, tzinfo=dt.UTC)


@pytest.fixture
async def service(database: str, kafka: KafkaProbe, ingress: ServiceRuntime) -> AsyncIterator[ServiceRuntime]:
    await kafka.create(partners=[COMMISSIONER, LEAD, PROVIDER])
    settings = BudgetSettings(
        database_url=database, delegations={COMMISSIONER: LEAD}, **service_tuning(kafka, "budget")
    )
    runtime = ServiceRuntime(build_definition(settings), clock=FixedClock(TODAY))
    await runtime.start()
    yield runtime
    await runtime.stop()


async def _rows(database: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_only_the_commissioner_or_its_lead_allocates_and_every_transfer_says_who_asserted_it(
    service: ServiceRuntime, kafka: KafkaProbe, database: str
) -> None:
    def send(org: str, payload: Any) -> Any:
        return kafka.send(kafka.topics.partner(org), new_event(payload, source=partner_source(org), time=SENT_AT))

    # The attack: the provider names itself as the source of £10bn for 05A.
    forged = allocated(COMMISSIONER, 1_000_000_000_000, allocation_id="ALLOC-8Z").model_copy(
        update={"source_organisation": PROVIDER}
    )
    await send(PROVIDER, forged)
    await send(COMMISSIONER, allocated(COMMISSIONER, 20_000_000))
    await send(LEAD, allocated(COMMISSIONER, 5_000_000, allocation_id="ALLOC-LEAD"))
    # The lead acts for 05A; 05A does not act for its lead.
    await send(COMMISSIONER, allocated(LEAD, 7_000_000, allocation_id="ALLOC-BACK"))

    dlq = await kafka.read(kafka.topics.dlq("budget"), until=lambda r: len(r) >= 2, timeout=60, settle=1.0)
    assert sorted(dict(r.headers)["homeward-dlq-reason"] for r in dlq) == [b"not-authorised"] * 2
    allocations = "SELECT asserted_by, principal, amount FROM transfers WHERE purpose = 'allocation' ORDER BY amount"

    async def both_allocated() -> bool:
        return len(await _rows(database, allocations)) == 2

    assert await eventually(both_allocated, timeout=60)
    assert [tuple(r) for r in await _rows(database, allocations)] == [
        # The principal the ingress named: the partner's Kafka user (namespaced, as in this test).
        (LEAD, f"User:{kafka.topics.namespace}{LEAD}", 5_000_000),
        (COMMISSIONER, f"User:{kafka.topics.namespace}{COMMISSIONER}", 20_000_000),
    ]

    # A placement the commissioner agreed (placements says so) and an invoice at £54,500 a night.
    agreed = registered("P1", start=D(2026, 5, 1), rate=54_500, provider=PROVIDER).model_copy(
        update={"asserted_by": COMMISSIONER, "principal": f"User:{COMMISSIONER}"}
    )
    await kafka.send(
        kafka.topics.internal("placements"), new_event(agreed, source=service_source("placements"), time=SENT_AT)
    )
    claim = invoice("INV-9", "P1", D(2026, 5, 1), D(2026, 5, 9), 9 * 5_450_000, provider=PROVIDER)
    await send(PROVIDER, claim)

    budget_topic = kafka.topics.internal("budget")
    held = await kafka.read(budget_topic, until=lambda r: len(r) >= 1, timeout=60, settle=1.0)
    (alert,) = [parse_kafka(r.value, r.headers).data for r in held]
    assert (alert.name, alert.kind, alert.daily_rate_pence, alert.upper_pence) == (
        "AmountHeld",
        "invoice",
        5_450_000,
        300_000,
    )
    invoices = "SELECT status, confirmed_by, accrued_pence FROM invoices WHERE invoice_id = 'INV-9'"
    assert [tuple(r) for r in await _rows(database, invoices)] == [("held", None, None)]

    # Only the commissioner confirms it; then it is matched (and, £436,500 above the accrual, flagged).
    confirmation = InvoiceConfirmed(
        invoice_id="INV-9",
        provider=PROVIDER,
        commissioner=COMMISSIONER,
        placement_id="P1",
        amount_pence=claim.amount_pence,
    )
    await send(PROVIDER, confirmation)
    await send(COMMISSIONER, confirmation)

    async def matched() -> bool:
        return [tuple(r) for r in await _rows(database, invoices)] == [("matched", COMMISSIONER, 9 * 54_500)]

    assert await eventually(matched, timeout=60)
    dlq = await kafka.read(kafka.topics.dlq("budget"), until=lambda r: len(r) >= 3, timeout=60, settle=1.0)
    assert sorted(dict(r.headers)["homeward-dlq-reason"] for r in dlq) == [b"not-authorised"] * 3

    await service.run_jobs_once()  # the accrual job: asserted by the agreement, posted by the service
    who = await _rows(database, "SELECT DISTINCT purpose, asserted_by, principal FROM transfers ORDER BY 1")
    assert {tuple(r) for r in who if r["purpose"] != "allocation"} == {
        ("commitment", COMMISSIONER, f"User:{COMMISSIONER}"),
        ("accrual", COMMISSIONER, "service:budget"),
    }
    unattributed = "SELECT count(*) AS n FROM transfers WHERE asserted_by IS NULL OR principal IS NULL"
    assert (await _rows(database, unattributed))[0]["n"] == 0
