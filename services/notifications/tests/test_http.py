"""The read API over a real PostgreSQL: the sent-mail log and its filters, 'as of' a day."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from homeward.contracts.vocab import Role
from homeward.kit.clock import FixedClock
from homeward.kit.db import migrate
from homeward.kit.http import build_app
from homeward.kit.topics import Topics
from homeward.notifications import management
from homeward.notifications.adapters.postgres import PgDirectory, PgEmailQueue, PgNotificationsUnitOfWork
from homeward.notifications.adapters.templates import JinjaRenderer
from homeward.notifications.domain.recipients import RecipientSpec
from homeward.notifications.entrypoints import http
from homeward.notifications.entrypoints.app import MIGRATIONS
from homeward.notifications.handlers import record_alert
from homeward.notifications.ports import Config
from homeward.testing import ops_headers, staff_headers
from notifications_support import sample_event

pytestmark = pytest.mark.integration

DAY1 = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
DAY2 = dt.datetime(2026, 3, 11, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[type-arg]
    await migrate(database, "notifications", MIGRATIONS)
    p = await asyncpg.create_pool(database, min_size=1, max_size=3)
    assert p is not None
    yield p
    await p.close()


async def _record(pool: asyncpg.Pool, event: Any, at: dt.datetime) -> None:  # type: ignore[type-arg]
    async with pool.acquire() as conn, conn.transaction():
        uow = PgNotificationsUnitOfWork(
            conn, "notifications", FixedClock(at), config=Config(), renderer=JinjaRenderer()
        )
        await record_alert(event, uow)


@pytest.fixture
async def api(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[type-arg]
    async with pool.acquire() as conn, conn.transaction():
        d = PgDirectory(conn)
        await management.add_recipient(d, RecipientSpec("case@05a.nhs.uk", "05A", Role.CASE_MANAGER))
        await management.add_recipient(d, RecipientSpec("case@05h.nhs.uk", "05H", Role.CASE_MANAGER))
        await management.add_recipient(d, RecipientSpec("daily@05a.nhs.uk", "05A", Role.CASE_MANAGER, digest=True))
    await _record(pool, sample_event("ReviewOverdue"), DAY1)
    await _record(pool, sample_event("ReviewDueSoon", "05H"), DAY2)
    queue = PgEmailQueue(pool, Topics("t."))
    (claimed,) = [e for e in await queue.claim_due(10, 60) if e.to_address == "case@05a.nhs.uk"]
    async with queue.settlement() as s:
        await s.mark_sent(claimed.id, DAY2)
    app = build_app("notifications", {}, routes=list(http.routes(pool, FixedClock(DAY2))))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://n", headers=staff_headers("05A", "case-manager")
    ) as client:
        yield client


H05 = staff_headers("05H", "clinical-lead")


async def _log(api: httpx.AsyncClient, who: dict[str, str] | None = None, **params: str) -> list[tuple[str, str, str]]:
    response = await api.get("/notifications", params=params, headers=who)
    assert response.status_code == 200, response.text
    return [(n["recipient"], n["event_type"], n["status"]) for n in response.json()["notifications"]]


async def test_the_log_filters_by_organisation_event_status_and_date(api: httpx.AsyncClient) -> None:
    everything = await _log(api)  # a 05A case manager: 05A's emails only
    assert sorted(everything) == [
        ("case@05a.nhs.uk", "ReviewOverdue", "sent"),
        ("daily@05a.nhs.uk", "ReviewOverdue", "pending"),
    ]
    assert sorted(await _log(api, org="05a")) == sorted(everything)
    assert await _log(api, H05) == [("case@05h.nhs.uk", "ReviewDueSoon", "pending")]
    assert await _log(api, H05, event_type="homeward.ReviewDueSoon.v1") == [
        ("case@05h.nhs.uk", "ReviewDueSoon", "pending")
    ]
    assert await _log(api, event_type="homeward.ReviewDueSoon.v1") == []
    assert await _log(api, status="sent") == [("case@05a.nhs.uk", "ReviewOverdue", "sent")]
    assert len(await _log(api, H05, **{"from": "2026-03-11"})) == 1
    assert len(await _log(api, **{"from": "2026-03-11"})) == 0
    assert len(await _log(api, to="2026-03-10")) == 2
    first = (await api.get("/notifications", params={"status": "sent"})).json()["notifications"][0]
    assert first["message_id"].endswith("@homeward>") and first["subject"].startswith("Action needed by ")


async def test_as_of_shows_the_log_as_it_stood_that_day(api: httpx.AsyncClient) -> None:
    assert sorted(await _log(api, as_of="2026-03-10")) == [
        ("case@05a.nhs.uk", "ReviewOverdue", "pending"),
        ("daily@05a.nhs.uk", "ReviewOverdue", "pending"),
    ]
    summary = (await api.get("/summary", params={"as_of": "2026-03-10"}, headers=ops_headers())).json()
    assert (summary["sent"], summary["pending"], summary["failed"]) == (0, 2, 0)
    today = (await api.get("/summary", headers=ops_headers())).json()
    assert (today["sent"], today["pending"], today["failed"], today["recipients"]) == (1, 2, 0, 3)
    assert today["by_event_type"]["ReviewOverdue"] == {"sent": 1, "pending": 1, "failed": 0, "suppressed": 0}


@pytest.mark.parametrize(
    "query", ["as_of=yesterday", "status=lost", "event_type=PlacementMade", "limit=0", "from=2026-13-01"]
)
async def test_bad_query_parameters_are_refused_with_a_reason(api: httpx.AsyncClient, query: str) -> None:
    response = await api.get(f"/notifications?{query}")
    assert response.status_code == 400
    assert response.json()["error"]


async def test_each_organisation_sees_only_its_own_emails_and_recipients(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool,  # type: ignore[type-arg]
) -> None:
    for path in ("/notifications", "/notifications/failed", "/subscriptions"):
        denied = await api.get(path, params={"org": "05H"})  # a 05A case manager asks for 05H's
        assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json"
        assert denied.json()["status"] == 403 and "05H" in denied.json()["detail"]
        assert (await api.get(path, headers={"Authorization": ""})).status_code == 401
        for role in ("finance", "ops"):
            assert (await api.get(path, headers=staff_headers("05A", role))).status_code == 403
    people = (await api.get("/subscriptions")).json()["recipients"]
    assert {r["email"] for r in people} == {"case@05a.nhs.uk", "daily@05a.nhs.uk"}
    theirs = (await api.get("/subscriptions", headers=H05)).json()["recipients"]
    assert [r["email"] for r in theirs] == ["case@05h.nhs.uk"]
    assert (await api.get("/summary")).status_code == 403  # every organisation's counts: ops only
    trail = await pool.fetch("SELECT organisation, role, action, refs FROM audit_log ORDER BY id")
    assert [(r["organisation"], r["action"]) for r in trail] == [
        ("05A", "GET /subscriptions"),
        ("05H", "GET /subscriptions"),
    ]
