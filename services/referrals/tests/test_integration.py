"""The referrals service on the real Kafka and PostgreSQL: partners' referrals and bed counts,
placements from the placements service, the events published and the reports served."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from homeward.contracts import new_event, partner_source
from homeward.contracts.events import (
    LocalCapacityChanged,
    LocalCapacityUnavailable,
    ReferralTriaged,
    ReferralWaitBreached,
)
from homeward.kit.clock import FixedClock
from homeward.kit.service import ServiceRuntime
from homeward.testing import KafkaProbe, eventually, new_ods, ops_headers, staff_headers

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
from .integration import api, events, fetchval, of, start, write_reference

H = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
ALL_NHS = (NHS_A, NHS_B, NHS_C, NHS_D)
# What waits in the kit's parking lot for its referral, by event type.
PARKED = (
    "SELECT count(*) FROM parking_lot WHERE status = 'parked' AND awaiting LIKE 'referral:%'"
    " AND event_type = 'homeward.{type}.v1'"
)


def spaced(nhs: str) -> str:
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"


def assert_no_nhs_number(blob: bytes | str) -> None:
    text = blob.decode() if isinstance(blob, bytes) else blob
    for nhs in ALL_NHS:
        assert nhs not in text and spaced(nhs) not in text


async def test_referrals_capacity_and_placements_give_the_right_events_and_reports(
    tmp_path: Path, database: str, kafka: KafkaProbe, capfd: pytest.CaptureFixture[str], ingress: ServiceRuntime
) -> None:
    commissioner, local1, local2, far, far_area = new_ods("C"), new_ods("L"), new_ods("M"), new_ods("F"), new_ods("A")
    site1, site2, far_site = f"{local1}01", f"{local2}01", f"{far}01"
    await kafka.create(partners=[commissioner, local1, local2, far])
    reference = write_reference(
        tmp_path / "reference.yaml",
        {commissioner: commissioner},
        [(site1, local1, commissioner), (site2, local2, commissioner), (far_site, far, far_area)],
    )
    clock = FixedClock(dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC))
    runtime = await start(database, kafka, clock, reference)
    try:
        # Counts arrive out of order and with stale resends; within a provider's topic the order holds.
        for event in [
            from_partner(beds(local1, site1, commissioner, 2, T0), local1),
            from_partner(beds(local1, site1, commissioner, 5, T0 - DAY), local1),  # older: ignored
            from_partner(beds(local1, site1, commissioner, 9, T0), local1),  # same instant: ignored
            from_partner(beds(local2, site2, commissioner, 3, T0 + H), local2),
            from_partner(beds(local2, site2, commissioner, 0, T0 - DAY), local2),  # older: ignored
            from_partner(beds(far, far_site, far_area, 4, T0), far),
        ]:
            await kafka.send(kafka.topics.partner(event.organisation), event)
        assert await eventually(lambda: _is(database, "SELECT count(*) FROM bed_reports", 6), timeout=60)

        await kafka.send(
            kafka.topics.partner(commissioner), from_partner(referral("REF-1", commissioner), commissioner)
        )
        await kafka.send(
            kafka.topics.partner(commissioner),
            from_partner(referral("REF-2", commissioner, bed_type="adult_acute", nhs_number=NHS_B), commissioner),
        )
        assert await eventually(lambda: _is(database, "SELECT count(*) FROM referrals", 2), timeout=60)

        placements = kafka.topics.internal("placements")
        await kafka.send(
            placements,
            from_placements(
                registered(
                    "PLC-1",
                    "REF-1",
                    commissioner,
                    site=site2,
                    site_area=commissioner,
                    out_of_area=False,
                    start_date="2026-03-03",
                )
            ),
        )
        await kafka.send(
            placements,
            from_placements(
                registered(
                    "PLC-2",
                    "REF-2",
                    commissioner,
                    site=far_site,
                    site_area=far_area,
                    out_of_area=True,
                    reason="10",
                    start_date="2026-03-05",
                    bed_type="adult_acute",
                )
            ),
        )
        # A placement naming a referral that has not arrived yet is parked, then applied.
        await kafka.send(
            placements,
            from_placements(
                registered(
                    "PLC-3",
                    "REF-3",
                    commissioner,
                    site=far_site,
                    site_area=far_area,
                    out_of_area=True,
                    reason="14",
                    start_date="2026-03-06",
                )
            ),
        )
        assert await eventually(lambda: _is(database, PARKED.format(type="PlacementRegistered"), 1), timeout=60)
        await kafka.send(
            kafka.topics.partner(commissioner),
            from_partner(referral("REF-3", commissioner, urgency="routine", nhs_number=NHS_C), commissioner),
        )
        await kafka.send(
            kafka.topics.partner(commissioner),
            from_partner(
                referral(
                    "REF-4", commissioner, urgency="routine", nhs_number=NHS_D, need_arose_at=(T0 + 5 * DAY).isoformat()
                ),
                commissioner,
            ),
        )

        # 3 accepted counts, 4 triages, 2 out-of-area placements: nothing else.
        records = await kafka.read(kafka.topics.internal("referrals"), until=lambda r: len(r) >= 9, timeout=60)
        assert (
            await fetchval(database, "SELECT count(*) FROM outbox WHERE topic = $1", kafka.topics.internal("referrals"))
            == 9
        )

        triaged = {t.referral_id: t for t in of(records, ReferralTriaged)}
        assert sorted(triaged) == ["REF-1", "REF-2", "REF-3", "REF-4"]
        assert [(o.site, o.available_beds) for o in triaged["REF-1"].local_options] == [(site2, 3), (site1, 2)]
        assert triaged["REF-2"].local_options == []

        gaps = {g.referral_id: g for g in of(records, LocalCapacityUnavailable)}
        assert sorted(gaps) == ["REF-2", "REF-3"]
        assert (gaps["REF-2"].bed_type.value, gaps["REF-2"].home_area, gaps["REF-2"].out_of_area_reason.value) == (
            "adult_acute",
            commissioner,
            "10",
        )
        assert gaps["REF-2"].waited_hours == 3 * 24 - 9  # 09:00 on 2 March to the start of 5 March
        assert gaps["REF-3"].out_of_area_reason.value == "14"

        local = [c for c in of(records, LocalCapacityChanged) if c.area == commissioner]
        assert len(local) == 2, "only the two accepted local counts publish a total"
        assert (local[-1].available_beds, local[-1].as_of) == (5, T0 + H)
        assert [(c.area, c.available_beds) for c in of(records, LocalCapacityChanged) if c.area == far_area] == [
            (far_area, 4)
        ]
        for r in records:
            assert_no_nhs_number(r.value)

        async with api(runtime, staff_headers(commissioner, "case-manager")) as client:
            await _check_reports(client, commissioner, far_area, site1, site2)
            await _check_scopes(client, commissioner, database)

        captured = capfd.readouterr()
        assert_no_nhs_number(captured.out + captured.err)
    finally:
        await runtime.stop()


async def _check_reports(client: httpx.AsyncClient, commissioner: str, far_area: str, site1: str, site2: str) -> None:
    capacity = (await client.get("/capacity", params={"area": commissioner, "bed_type": "picu"})).json()["capacity"]
    assert [(c["area"], c["available_beds"]) for c in capacity] == [(commissioner, 5)]
    assert [(s["site"], s["available_beds"]) for s in capacity[0]["sites"]] == [(site1, 2), (site2, 3)]
    # As of the day before, the late-arriving older counts are the ones that were true then.
    earlier = (await client.get("/capacity", params={"area": commissioner, "as_of": "2026-03-01"})).json()["capacity"]
    assert [(s["site"], s["available_beds"]) for s in earlier[0]["sites"]] == [(site1, 5), (site2, 0)]

    unmet = (await client.get("/unmet-need", params={"area": commissioner})).json()
    rows = {(r["bed_type"], r["month"]): (r["count"], r["out_of_area"], r["by_reason"]) for r in unmet["rows"]}
    assert rows == {("adult_acute", "2026-03"): (1, 1, {"10": 1}), ("picu", "2026-03"): (0, 1, {"14": 1})}
    assert unmet["total"] == 1
    assert (await client.get("/unmet-need", params={"area": far_area})).json()["rows"] == []
    assert (await client.get("/unmet-need", params={"area": commissioner, "to": "2026-03-04"})).json()["rows"] == []

    stats = (await client.get("/time-to-placement", params={"commissioner": commissioner})).json()
    assert stats["count"] == 3
    assert (stats["median_hours"], stats["max_hours"]) == (63.0, 87.0)  # 15h, 63h and 87h

    open_now = (await client.get("/referrals/open", params={"commissioner": commissioner})).json()
    assert [(r["referral_id"], r["waited_hours"]) for r in open_now["referrals"]] == [("REF-4", 3 * 24 + 3)]
    past = (await client.get("/referrals/open", params={"commissioner": commissioner, "as_of": "2026-03-04"})).json()
    assert sorted(r["referral_id"] for r in past["referrals"]) == ["REF-2", "REF-3"]
    assert all(r["waited_hours"] == 62 for r in past["referrals"])  # 09:00 on 2 March to the end of 4 March
    assert (await client.get("/referrals/open", params={"urgency": "soon"})).status_code == 400

    detail = (await client.get("/referrals/REF-2")).json()
    assert detail["placement"]["out_of_area"] is True and detail["waited_hours"] == 63
    assert "nhs_number" not in json.dumps(detail)

    summary = (await client.get("/summary", headers=ops_headers())).json()
    assert (summary["open_referrals"], summary["placed"], summary["placed_out_of_area"]) == (1, 3, 2)
    assert (summary["placed_out_of_area_no_local_bed"], summary["stale_capacity_updates_ignored"]) == (1, 3)
    assert summary["parked_placements"] == 0


async def _check_scopes(client: httpx.AsyncClient, commissioner: str, database: str) -> None:
    """Another commissioner, a provider, finance and ops see none of this commissioner's referrals."""
    other = staff_headers("05R", "case-manager")
    for path, params in (
        ("/referrals/open", {"commissioner": commissioner}),
        ("/referrals/REF-2", {}),
        ("/unmet-need", {"commissioner": commissioner}),
        ("/time-to-placement", {"commissioner": commissioner}),
    ):
        denied = await client.get(path, params=params, headers=other)
        assert denied.status_code == 403 and denied.headers["content-type"] == "application/problem+json", path
        for role in ("provider", "finance", "ops"):
            assert (await client.get(path, params=params, headers=staff_headers(commissioner, role))).status_code == 403
        assert (await client.get(path, params=params, headers={"Authorization": ""})).status_code == 401
    assert (await client.get("/referrals/open", headers=other)).json()["referrals"] == []
    assert (await client.get("/unmet-need", headers=other)).json()["rows"] == []
    assert (await client.get("/time-to-placement", headers=other)).json()["count"] == 0
    assert (await client.get("/summary")).status_code == 403  # every organisation's counts: ops only
    assert (await client.get("/capacity", headers=staff_headers("RX1", "provider"))).status_code == 200
    conn = await asyncpg.connect(database)
    try:
        trail = await conn.fetch("SELECT organisation, role, action, refs FROM audit_log ORDER BY id")
    finally:
        await conn.close()
    mine = [(r["action"], list(r["refs"])) for r in trail if r["organisation"] == commissioner]
    assert any(a == "GET /referrals/REF-2" and "REF-2" in refs for a, refs in mine)
    assert any(a == "GET /referrals/open" and refs[:1] == ["REF-4"] for a, refs in mine)
    assert {r["role"] for r in trail if r["organisation"] == commissioner} == {"case-manager"}  # refusals: no row
    assert all(r["refs"] == [] for r in trail if r["organisation"] == "05R")  # 05R read, and was shown nothing


async def _is(database: str, sql: str, expected: Any) -> bool:
    return await fetchval(database, sql) == expected


async def test_duplicate_and_resent_events_publish_each_fact_once(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    commissioner, provider = new_ods("C"), new_ods("L")
    site = f"{provider}01"
    await kafka.create(partners=[commissioner, provider])
    runtime = await start(database, kafka, FixedClock(dt.datetime(2026, 3, 10, tzinfo=dt.UTC)))
    try:
        count = from_partner(beds(provider, site, commissioner, 2, T0), provider)
        ref = from_partner(referral("REF-D", commissioner), commissioner)
        resent_ref = from_partner(referral("REF-D", commissioner), commissioner)  # same content, new event id
        placed = from_placements(
            registered("PLC-D", "REF-D", commissioner, site="9ZZ01", site_area="QHM", out_of_area=True, reason="10")
        )
        replaced = from_placements(
            registered("PLC-D", "REF-D", commissioner, site="9ZZ01", site_area="QHM", out_of_area=True, reason="10")
        )
        for _ in range(2):
            await kafka.send(kafka.topics.partner(provider), count)
        assert await eventually(lambda: _is(database, "SELECT count(*) FROM bed_reports", 1), timeout=60)
        for event in (ref, ref, resent_ref):
            await kafka.send(kafka.topics.partner(commissioner), event)
        assert await eventually(
            lambda: _is(database, "SELECT count(*) FROM inbox WHERE event_type LIKE '%Referral%'", 2), timeout=60
        )
        for event in (placed, placed, replaced):
            await kafka.send(kafka.topics.internal("placements"), event)
        assert await eventually(
            lambda: _is(database, "SELECT count(*) FROM inbox WHERE event_type LIKE '%Placement%'", 2), timeout=60
        )

        records = await kafka.read(kafka.topics.internal("referrals"), until=lambda r: len(r) >= 3, timeout=60)
        published = await fetchval(
            database, "SELECT count(*) FROM outbox WHERE topic = $1", kafka.topics.internal("referrals")
        )
        assert published == 3
        assert [len(of(records, cls)) for cls in (LocalCapacityChanged, ReferralTriaged, LocalCapacityUnavailable)] == [
            1,
            1,
            1,
        ]
        assert await fetchval(database, "SELECT count(*) FROM referrals") == 1
    finally:
        await runtime.stop()


async def test_bad_input_is_dead_lettered_with_its_reason_and_the_service_carries_on(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    commissioner, provider, stranger = new_ods("C"), new_ods("L"), new_ods("S")
    site = f"{provider}01"
    await kafka.create(partners=[commissioner, provider, stranger])
    runtime = await start(database, kafka, FixedClock(dt.datetime(2026, 3, 10, tzinfo=dt.UTC)))
    try:
        topic = kafka.topics.partner(commissioner)
        await kafka.send_raw(topic, b'{"specversion": "1.0", "id": ', key=b"REF-X")
        bad_nhs = from_partner(referral("REF-BAD", commissioner), commissioner).to_dict()
        bad_nhs["data"]["nhs_number"] = NHS_A[:9] + str((int(NHS_A[9]) + 1) % 10)
        await kafka.send_raw(topic, json.dumps(bad_nhs).encode())
        await kafka.send(topic, from_partner(referral("REF-FORGED", commissioner), stranger))
        await kafka.send(kafka.topics.partner(stranger), from_partner(referral("REF-NOTPARTY", commissioner), stranger))
        await kafka.send(topic, from_partner(beds(provider, site, commissioner, 2, T0), commissioner))
        await kafka.send(
            kafka.topics.partner(commissioner), from_partner(referral("REF-OK", commissioner), commissioner)
        )
        assert await eventually(lambda: _is(database, "SELECT count(*) FROM referrals", 1), timeout=60)
        await kafka.send(
            kafka.topics.internal("placements"),
            from_placements(registered("PLC-Y", "REF-OK", stranger, site="9ZZ01", site_area="QHM", out_of_area=True)),
        )
        good_count = new_event(beds(provider, site, commissioner, 1, T0), source=partner_source(provider))
        await kafka.send(kafka.topics.partner(provider), good_count)

        # What no contract allows is refused once, by the ingress; who may state what about a
        # referral or a site, by referrals.
        refused = await kafka.read(kafka.topics.dlq("ingress"), until=lambda r: len(r) >= 3, timeout=60)
        reasons = sorted(dict(r.headers)["homeward-dlq-reason"].decode() for r in refused)
        assert reasons == sorted(["malformed-json", "invalid-payload", "wrong-organisation"])
        dlq = await kafka.read(kafka.topics.dlq("referrals"), until=lambda r: len(r) >= 3, timeout=60)
        reasons = sorted(dict(r.headers)["homeward-dlq-reason"].decode() for r in dlq)
        assert reasons == ["not-party", "not-party", "not-party"]
        for r in [*refused, *dlq]:
            assert_no_nhs_number(dict(r.headers)["homeward-dlq-error"])

        records = await kafka.read(kafka.topics.internal("referrals"), until=lambda r: len(r) >= 3, timeout=60)
        # The good count (taken before the referral's time, sent after it) triages it again.
        first, again = of(records, ReferralTriaged)
        assert (first.referral_id, first.local_options, first.supersedes) == ("REF-OK", [], None)
        assert [(o.site, o.available_beds) for o in again.local_options] == [(site, 1)]
        assert again.supersedes == next(e.id for e in events(records) if e.data == first)
        assert [c.available_beds for c in of(records, LocalCapacityChanged)] == [1]
        assert await fetchval(database, "SELECT placement_id IS NULL FROM referrals WHERE referral_id = 'REF-OK'")
        assert runtime.server is not None and runtime.server.started
        port = runtime.server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200, ready.text
    finally:
        await runtime.stop()


async def test_wait_breaches_are_published_once_per_threshold_with_two_schedulers_at_once(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    commissioner = new_ods("C")
    await kafka.create(partners=[commissioner])
    clock = FixedClock(T0 + H)
    runtime = await start(database, kafka, clock)
    try:
        topic = kafka.topics.partner(commissioner)
        await kafka.send(topic, from_partner(referral("REF-E", commissioner, urgency="emergency"), commissioner))
        await kafka.send(
            topic, from_partner(referral("REF-U", commissioner, urgency="urgent", nhs_number=NHS_B), commissioner)
        )
        assert await eventually(lambda: _is(database, "SELECT count(*) FROM referrals", 2), timeout=60)
        job = next(j for j in runtime.d.jobs if j.name == "waits")
        assert runtime.pool is not None

        async def two_replicas() -> int:
            results: Any = await asyncio.gather(job.run(runtime.pool, clock), job.run(runtime.pool, clock))
            return sum(results)

        clock.set(T0 + 13 * H)
        assert await two_replicas() == 2  # emergency: 4h and 12h
        assert await two_replicas() == 0
        await kafka.send(
            kafka.topics.internal("placements"),
            from_placements(
                registered(
                    "PLC-U",
                    "REF-U",
                    commissioner,
                    site="9ZZ01",
                    site_area="QHM",
                    out_of_area=True,
                    reason="10",
                    start_date="2026-03-03",
                )
            ),
        )
        assert await eventually(
            lambda: _is(database, "SELECT count(*) FROM referrals WHERE placement_id IS NOT NULL", 1), timeout=60
        )
        clock.set(T0 + 30 * DAY)
        assert await two_replicas() == 0, (
            "a placed referral no longer breaches, and emergency has no threshold past 12h"
        )

        records = await kafka.read(
            kafka.topics.internal("referrals"),
            until=lambda r: len(of(r, ReferralWaitBreached)) >= 2 and len(of(r, LocalCapacityUnavailable)) >= 1,
            timeout=60,
        )
        breaches = sorted((b.referral_id, b.threshold_hours, b.waited_hours) for b in of(records, ReferralWaitBreached))
        assert breaches == [("REF-E", 4, 13), ("REF-E", 12, 13)]
        assert (
            await fetchval(
                database, "SELECT count(*) FROM outbox WHERE event_type = 'homeward.ReferralWaitBreached.v1'"
            )
            == 2
        )
        for r in records:
            assert_no_nhs_number(r.value)
    finally:
        await runtime.stop()


async def test_a_withdrawal_goes_through_the_ingress_and_only_a_referrer_may_send_it(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> None:
    commissioner, stranger = new_ods("C"), new_ods("S")
    await kafka.create(partners=[commissioner, stranger])
    runtime = await start(database, kafka, FixedClock(T0 + 30 * H))
    try:
        own = kafka.topics.partner(commissioner)
        # The withdrawal comes first: parked, then applied when the referral arrives.
        await kafka.send(own, from_partner(withdrawn("REF-W", commissioner, T0 + 2 * H, "met_elsewhere"), commissioner))
        assert await eventually(lambda: _is(database, PARKED.format(type="ReferralWithdrawn"), 1), timeout=60)
        await kafka.send(own, from_partner(referral("REF-W", commissioner, urgency="emergency"), commissioner))
        await kafka.send(own, from_partner(referral("REF-K", commissioner, nhs_number=NHS_B), commissioner))
        assert await eventually(lambda: _is(database, "SELECT count(*) FROM referrals", 2), timeout=60)
        # Someone who may not refer for the commissioner may not withdraw its referral either.
        await kafka.send(
            kafka.topics.partner(stranger),
            from_partner(withdrawn("REF-K", commissioner, T0 + 3 * H), stranger),
        )
        dlq = await kafka.read(kafka.topics.dlq("referrals"), until=lambda r: len(r) >= 1, timeout=60)
        assert [dict(r.headers)["homeward-dlq-reason"] for r in dlq] == [b"not-party"]

        assert await fetchval(database, "SELECT withdrawn_at FROM referrals WHERE referral_id = 'REF-W'") == T0 + 2 * H
        assert await fetchval(database, "SELECT withdrawn_at FROM referrals WHERE referral_id = 'REF-K'") is None
        assert await fetchval(database, PARKED.format(type="ReferralWithdrawn")) == 0
        async with api(runtime, staff_headers(commissioner, "case-manager")) as client:
            detail = (await client.get("/referrals/REF-W")).json()
            summary = (await client.get("/summary", headers=ops_headers())).json()
            still_open = [r["referral_id"] for r in (await client.get("/referrals/open")).json()["referrals"]]
        assert (detail["open"], detail["withdrawal"]) == (
            False,
            {"withdrawn_at": (T0 + 2 * H).isoformat(), "reason": "met_elsewhere"},
        )
        assert (summary["withdrawn"], summary["open_referrals"]) == (1, 1)
        assert still_open == ["REF-K"]
        # The withdrawn emergency referral is chased no more: only REF-K's thresholds are reported.
        await runtime.run_jobs_once()
        records = await kafka.read(
            kafka.topics.internal("referrals"),
            until=lambda r: len(of(r, ReferralWaitBreached)) >= 1,
            timeout=30,
            settle=1.0,
        )
        assert {b.referral_id for b in of(records, ReferralWaitBreached)} == {"REF-K"}
    finally:
        await runtime.stop()
