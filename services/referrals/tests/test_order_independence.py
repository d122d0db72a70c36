"""The same partner events consumed in two different interleavings, each by its own referrals
service on the real Kafka and PostgreSQL (two fresh topic namespaces and databases), end the
same: the referrals read model, the triage that stands for each referral, and every other event
published, down to the emails notifications would render from them (issue 14).

The events are produced to the ingress's topic, as the ingress republishes what it accepts, in
phases: each phase is consumed before the next is sent, so the order is forced, not left to
chance. One interleaving sends the bed counts first, in the order they were taken; the other
sends the placements, the withdrawal and the referrals first and the counts last, newest first,
so that every count arrives after the referrals it concerns.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest
from homeward.contracts import Event
from homeward.contracts.events import (
    LocalCapacityChanged,
    LocalCapacityUnavailable,
    ReferralTriaged,
    ReferralWaitBreached,
)
from homeward.kit.clock import FixedClock
from homeward.kit.uow import unit_of_work
from homeward.notifications.domain.alerts import alert_from
from homeward.referrals.entrypoints.app import unit_of_work_factory
from homeward.referrals.handlers import report_wait_breaches
from homeward.referrals.ports import ReferralsUnitOfWork
from homeward.referrals.settings import ReferralsSettings
from homeward.testing import Infra, KafkaProbe, eventually, new_namespace, new_ods, scratch_database

from .factories import (
    NHS_A,
    NHS_B,
    NHS_C,
    NHS_D,
    T0,
    beds,
    from_partner,
    from_placements,
    referral,
    registered,
    withdrawn,
)
from .integration import events, start

H = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
CLOCK = T0 + 10 * DAY


@pytest.fixture
async def other_kafka(infra: Infra) -> AsyncIterator[KafkaProbe]:
    probe = KafkaProbe(infra, new_namespace())
    await probe.create()
    await probe.grant_services()
    yield probe
    await probe.close()
    await probe.revoke_services()
    await probe.delete_topics()


@pytest.fixture
async def other_database(infra: Infra) -> AsyncIterator[str]:
    async with scratch_database(infra) as dsn:
        yield dsn


def _scenario(c: str, p1: str, p2: str, far: str) -> dict[str, list[tuple[str, Event[Any]]]]:
    """(topic kind, event) per group; the event ids and times are fixed, so both runs send the same."""
    s1, s2, far_site = f"{p1}01", f"{p2}01", f"{far}01"

    def partner(payload: Any, sender: str, n: str, at: dt.datetime) -> tuple[str, Event[Any]]:
        return "ingress", from_partner(payload, sender, id=f"evt-{n}", time=at)

    counts = [  # in the order they were taken
        partner(beds(p1, s1, c, 2, T0 - DAY), p1, "c1", T0 - DAY),
        partner(beds(p2, s2, c, 0, T0 - DAY), p2, "c2", T0 - DAY),
        partner(beds(p1, s1, c, 0, T0 + 2 * H), p1, "c3", T0 + 2 * H),
        partner(beds(p2, s2, c, 1, T0 + 3 * H), p2, "c4", T0 + 3 * H),
        partner(beds(p1, s1, c, 1, T0 + 6 * H), p1, "c5", T0 + 6 * H),
    ]
    referrals = [
        partner(referral("REF-1", c, need_arose_at=T0.isoformat()), c, "r1", T0),
        partner(referral("REF-2", c, nhs_number=NHS_B, need_arose_at=(T0 + 4 * H).isoformat()), c, "r2", T0 + 4 * H),
        partner(referral("REF-3", c, nhs_number=NHS_C, need_arose_at=(T0 + 7 * H).isoformat()), c, "r3", T0 + 7 * H),
        partner(
            referral("REF-4", c, nhs_number=NHS_D, urgency="emergency", need_arose_at=(T0 + H).isoformat()),
            c,
            "r4",
            T0 + H,
        ),
    ]
    withdrawals = [partner(withdrawn("REF-4", c, T0 + 3 * H), c, "w4", T0 + 3 * H)]
    day = T0.date().isoformat()
    placements = [
        (
            "placements",
            from_placements(
                registered("PLC-1", "REF-1", c, site=s1, site_area=c, out_of_area=False, start_date=day, provider=p1),
                id="evt-p1",
                time=T0 + 5 * H,
            ),
        ),
        (
            "placements",
            from_placements(
                registered(
                    "PLC-2",
                    "REF-2",
                    c,
                    site=far_site,
                    site_area=far,
                    out_of_area=True,
                    reason="10",
                    start_date=(T0 + DAY).date().isoformat(),
                    provider=far,
                ),
                id="evt-p2",
                time=T0 + DAY,
            ),
        ),
    ]
    assert NHS_A  # REF-1 carries the factory's default number
    return {"counts": counts, "referrals": referrals, "withdrawals": withdrawals, "placements": placements}


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _play(
    dsn: str, kafka: KafkaProbe, phases: Sequence[Sequence[tuple[str, Event[Any]]]]
) -> tuple[list[dict[str, Any]], list[Event[Any]]]:
    runtime = await start(dsn, kafka, FixedClock(CLOCK))
    try:
        sent = 0
        for phase in phases:
            for kind, event in phase:
                await kafka.send(kafka.topics.internal(kind), event)
            sent += len(phase)
            # The phase is handled before the next is sent: every event is in the inbox.
            assert await eventually(lambda n=sent: _is(dsn, "SELECT count(*) FROM inbox", n), timeout=60)
        # The wait job, once everything is in, as of the same instant in both runs.
        pool = runtime.pool
        assert pool is not None
        settings = runtime.settings
        assert isinstance(settings, ReferralsSettings)
        factory = unit_of_work_factory(settings)
        async with unit_of_work(pool, factory, "referrals", FixedClock(CLOCK), topics=kafka.topics) as uow:
            assert isinstance(uow, ReferralsUnitOfWork)
            await report_wait_breaches(uow)
        expected = await _count(dsn, "SELECT count(*) FROM outbox")
        records = await kafka.read(
            kafka.topics.internal("referrals"), until=lambda r: len(r) >= expected, timeout=60, settle=0.5
        )
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                """SELECT referral_id, local_options, triaged_as_of, triage_id, placement_id, placed_on, out_of_area,
                          waited_hours, withdrawn_at, withdrawal_reason, withdrawal_event_id
                   FROM referrals ORDER BY referral_id"""
            )
        finally:
            await conn.close()
        model = [{**dict(r), "local_options": json.loads(r["local_options"])} for r in rows]
        return model, events(records)
    finally:
        await runtime.stop()


async def _is(dsn: str, sql: str, expected: int) -> bool:
    return await _count(dsn, sql) == expected


def _standing_triage(published: list[Event[Any]]) -> dict[str, tuple[str, dt.datetime, Any]]:
    triages = [e for e in published if isinstance(e.data, ReferralTriaged)]
    superseded = {e.data.supersedes for e in triages}
    standing = [e for e in triages if e.id not in superseded]
    assert len(standing) == len({e.data.referral_id for e in triages}), "one standing triage per referral"
    # The same event in both runs, but for the id of the one it replaced (none when counts came first).
    return {e.data.referral_id: (e.id, e.time, e.data.model_copy(update={"supersedes": None})) for e in standing}


def _facts(published: list[Event[Any]], cls: type[Any]) -> dict[str, tuple[dt.datetime, Any]]:
    return {e.id: (e.time, e.data) for e in published if isinstance(e.data, cls)}


def _emails(published: list[Event[Any]]) -> dict[str, Any]:
    """What notifications would send for each event (subject, due date, facts), by event id."""
    out = {}
    for e in published:
        alert = alert_from(e)
        if alert is not None:
            out[e.id] = (alert.subject, alert.due_by, alert.occurred_at, alert.facts, sorted(alert.organisations))
    return out


async def test_two_interleavings_of_the_same_partner_events_end_with_the_same_triage_and_emails(
    database: str, other_database: str, kafka: KafkaProbe, other_kafka: KafkaProbe
) -> None:
    c, p1, p2, far = new_ods("C"), new_ods("L"), new_ods("M"), new_ods("F")
    sc = _scenario(c, p1, p2, far)
    counts_first = [sc["counts"], sc["referrals"], sc["withdrawals"], sc["placements"]]
    counts_last = [sc["placements"], sc["withdrawals"], sc["referrals"], list(reversed(sc["counts"]))]

    model_a, published_a = await _play(database, kafka, counts_first)
    model_b, published_b = await _play(other_database, other_kafka, counts_last)

    # The read model is the same, and triage is what the counts said at each referral's time.
    assert model_a == model_b
    options = {r["referral_id"]: [(o["site"], o["available_beds"]) for o in r["local_options"]] for r in model_a}
    assert options == {
        "REF-1": [(f"{p1}01", 2)],
        "REF-2": [(f"{p2}01", 1)],
        "REF-3": [(f"{p1}01", 1), (f"{p2}01", 1)],
        "REF-4": [(f"{p1}01", 2)],
    }
    assert [r["withdrawn_at"] is not None for r in model_a] == [False, False, False, True]

    # The triage that stands for each referral is the same event: id, time and content.
    assert _standing_triage(published_a) == _standing_triage(published_b)
    # Counts first: one triage each. Counts last: the referrals were triaged again as the counts came.
    assert len(_facts(published_a, ReferralTriaged)) == 4
    assert len(_facts(published_b, ReferralTriaged)) > 4
    assert all(e.data.supersedes is None for e in published_a if isinstance(e.data, ReferralTriaged))

    # Unmet need and waits, and so the emails, are the same.
    for cls in (LocalCapacityUnavailable, ReferralWaitBreached):
        assert _facts(published_a, cls) == _facts(published_b, cls), cls.name
    assert len(_facts(published_a, LocalCapacityUnavailable)) == 1
    # REF-3 is still waiting; REF-4 was withdrawn before its emergency thresholds (4 h, 12 h).
    assert {e.data.referral_id for e in published_a if isinstance(e.data, ReferralWaitBreached)} == {"REF-3"}
    emails_a, emails_b = _emails(published_a), _emails(published_b)
    assert emails_a == emails_b and len(emails_a) >= 2
    # Area totals follow the counts as they arrive (a stale count publishes none): not compared.
    assert _facts(published_a, LocalCapacityChanged)
