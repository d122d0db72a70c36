"""A back-dated rate change stated after a move home corrects it (issue 14): placements and
budget as separate services on the real Kafka and PostgreSQL.

05A places a person out of area at £620 a night from 1 April 2026; they come home to a local
bed at £410 on 1 June. On 10 June the distant provider's uplift to £650 from 1 May is stated.
The move was published at £620, so placements publishes a RepatriationCorrected (reason
"rate-changed", naming the move it corrects), and the budget's saving follows: £240 a night
instead of £210, over the 304 nights from 1 June to 31 March in 2026-27.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from homeward.budget.entrypoints.app import build_definition as budget_definition
from homeward.budget.entrypoints.http import build_routes
from homeward.budget.settings import BudgetSettings
from homeward.contracts import new_event, parse_kafka, partner_source
from homeward.contracts.events import (
    PatientRepatriated,
    PlacementEnded,
    PlacementRateChanged,
    RepatriationCorrected,
)
from homeward.contracts.vocab import EndReason, RateChangeReason
from homeward.kit.clock import FixedClock
from homeward.kit.http import build_app
from homeward.kit.service import ServiceRuntime
from homeward.placements.entrypoints.app import build_definition as placements_definition
from homeward.placements.settings import PlacementsSettings
from homeward.testing import (
    Infra,
    KafkaProbe,
    eventually,
    new_ods,
    sample_placement,
    scratch_database,
    service_tuning,
    staff_headers,
)

pytestmark = pytest.mark.integration
D = dt.date
FY = "2026-27"
COMMISSIONER = "05A"


def _at(day: dt.date, hour: int = 10) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), dt.UTC)


@pytest.fixture
async def budget_database(infra: Infra) -> AsyncIterator[str]:
    async with scratch_database(infra) as dsn:
        yield dsn


async def _savings(budget: ServiceRuntime) -> tuple[int, int] | None:
    assert budget.pool is not None
    app = build_app("budget", checks={}, routes=build_routes(budget.pool, budget.clock))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://budget", headers=staff_headers(COMMISSIONER, "finance")
    ) as client:
        r = await client.get(f"/positions/{COMMISSIONER}", params={"financial_year": FY})
    if r.status_code != 200:
        return None
    body = r.json()
    return body["savings_year_pence"], body["savings_to_date_pence"]


async def test_a_back_dated_rate_change_after_the_move_corrects_it_and_the_saving_follows(
    database: str, budget_database: str, kafka: KafkaProbe
) -> None:
    far = new_ods("8")
    clock = FixedClock(_at(D(2026, 6, 15), 12))
    placements = ServiceRuntime(
        placements_definition(PlacementsSettings(database_url=database, **service_tuning(kafka, "placements"))),
        clock=clock,
    )
    budget = ServiceRuntime(
        budget_definition(BudgetSettings(database_url=budget_database, **service_tuning(kafka, "budget"))),
        clock=clock,
    )
    await placements.start()
    await budget.start()
    try:
        common: dict[str, Any] = {"commissioner": COMMISSIONER, "nhs_number": "9990000018"}
        away = sample_placement(
            "PLC-AWAY",
            provider=far,
            provider_site=f"{far}01",
            provider_site_area=new_ods("Q"),
            start_date="2026-04-01",
            daily_rate_pence=62000,
            **common,
        )
        home = sample_placement(
            "PLC-HOME",
            provider="RYG",
            provider_site="RYG01",
            provider_site_area=COMMISSIONER,
            start_date="2026-06-01",
            daily_rate_pence=41000,
            **common,
        )
        left = PlacementEnded(placement_id="PLC-AWAY", end_date=D(2026, 6, 1), end_reason=EndReason.TRANSFER)
        uplift = PlacementRateChanged(
            placement_id="PLC-AWAY",
            daily_rate_pence=65000,
            effective_date=D(2026, 5, 1),
            reason=RateChangeReason.ANNUAL_UPLIFT,
        )
        for payload, day in [(away, D(2026, 4, 1)), (home, D(2026, 6, 1)), (left, D(2026, 6, 1))]:
            await kafka.send(
                kafka.topics.internal("ingress"), new_event(payload, source=partner_source(COMMISSIONER), time=_at(day))
            )

        async def saving_is(expected: tuple[int, int]) -> bool:
            return await _savings(budget) == expected

        # The move at the rates then known: £210 a night; the job realises the 14 days passed by 15 June.
        assert await eventually(lambda: saving_is((304 * 21000, 0)), timeout=60), await _savings(budget)
        await budget.run_jobs_once()
        assert await _savings(budget) == (304 * 21000, 14 * 21000)
        await kafka.send(
            kafka.topics.internal("ingress"),
            new_event(uplift, source=partner_source(COMMISSIONER), id="uplift", time=_at(D(2026, 6, 10))),
        )
        assert await eventually(lambda: saving_is((304 * 24000, 14 * 24000)), timeout=60)

        records = await kafka.read(
            kafka.topics.internal("placements"),
            until=lambda rs: any(b"RepatriationCorrected" in (r.value or b"") for r in rs),
            timeout=30,
        )
        events = [parse_kafka(r.value, r.headers) for r in records]
        (move,) = [e for e in events if type(e.data) is PatientRepatriated]
        (fix,) = [e for e in events if isinstance(e.data, RepatriationCorrected)]
        assert (fix.data.reason, fix.data.corrects_event_id) == ("rate-changed", move.id)
        assert (fix.data.previous_from_daily_rate_pence, fix.data.from_daily_rate_pence) == (62000, 65000)
        assert fix.time == _at(D(2026, 6, 10))  # when the change was stated
        assert move.time == dt.datetime(2026, 6, 1, tzinfo=dt.UTC)  # the day home
    finally:
        await budget.stop()
        await placements.stop()
