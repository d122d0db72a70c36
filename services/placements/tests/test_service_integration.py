"""The placements service on the real Kafka and PostgreSQL: a partner's sequence of events in,
the register, the events on homeward.placements.v1, the dead letters and the API answers out."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import structlog
from homeward.contracts import new_event, parse_kafka, partner_source, service_source
from homeward.contracts.events import LocalCapacityChanged, Payload, PlacementAgreed
from homeward.kit.clock import FixedClock
from homeward.kit.logging import configure_logging
from homeward.kit.service import ServiceRuntime
from homeward.placements.entrypoints.app import build_definition
from homeward.placements.settings import PlacementsSettings
from homeward.testing import KafkaProbe, eventually, ops_headers, service_tuning, staff_headers
from placements_support import NHS_A, NHS_B, NHS_C, NHS_D, at, ended, local_made, placement_made, rate_changed, review

COMM, FAR, LOCAL = "05A", "8Z000", "RYG"
BAD_NHS = "9990000019"  # fails the Modulus 11 check
NHS_USED = (NHS_A, NHS_B, NHS_C, NHS_D, BAD_NHS)
REFERENCE = """
commissioners:
  - {code: 05A, area: QWU, name: NHS Coventry and Rugby}
sites:
  - {code: RYG01, provider: RYG, area: QWU, name: Caludon Centre}
"""


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The service's real logging set-up (structlog through the standard library), at DEBUG."""
    configure_logging("placements", "DEBUG", "json")
    root = logging.getLogger()
    root.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    yield caplog
    root.handlers[:] = []
    structlog.reset_defaults()


@pytest.fixture
async def service(
    tmp_path: Path, database: str, kafka: KafkaProbe, ingress: ServiceRuntime
) -> AsyncIterator[ServiceRuntime]:
    await kafka.create(partners=[COMM, FAR, LOCAL])
    (tmp_path / "reference.yaml").write_text(REFERENCE)
    settings = PlacementsSettings(
        database_url=database,
        reference_data=tmp_path / "reference.yaml",
        **service_tuning(kafka, "placements"),
    )
    runtime = ServiceRuntime(build_definition(settings), clock=FixedClock(dt.date(2026, 1, 5)))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def fetch(database: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def count(database: str, sql: str, *args: Any) -> int:
    return int((await fetch(database, sql, *args))[0][0])


async def count_is(expected: int, database: str, sql: str) -> bool:
    return await count(database, sql) == expected


async def test_a_partner_sequence_gives_the_right_register_events_dead_letters_and_answers(
    service: ServiceRuntime,
    database: str,
    kafka: KafkaProbe,
    captured_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = service.clock
    assert isinstance(clock, FixedClock)
    comm, far, local = kafka.topics.partner(COMM), kafka.topics.partner(FAR), kafka.topics.partner(LOCAL)

    def from_(org: str, payload: Payload, time: dt.datetime, id: str | None = None) -> Any:
        return new_event(payload, source=partner_source(org), time=time, id=id)

    # 1. The provider reports a review before anyone has stated the placement: it is parked.
    await kafka.send(far, from_(FAR, review("PLC-1", "oversight_visit", "2026-02-20"), at("2026-02-20")))
    # The local provider, no party to PLC-2, tries to end it before it is known: parked too, for now.
    await kafka.send(local, from_(LOCAL, ended("PLC-2", "2026-02-01", "discharged_home"), at("2026-02-01")))
    assert await eventually(lambda: count_is(2, database, "SELECT count(*) FROM parking_lot WHERE status='parked'"))

    # 2. The commissioner's own sequence, with duplicates, a conflict and bad input among it.
    made_2 = from_(
        COMM, placement_made("PLC-2", nhs=NHS_B, start="2026-01-10", out_of_area_reason="10"), at("2026-01-10")
    )
    good = [
        from_(COMM, placement_made("PLC-1", nhs=NHS_A, out_of_area_reason="10"), at("2026-01-05")),
        made_2,
        made_2,  # redelivered: same event id
        from_(COMM, placement_made("PLC-2", nhs=NHS_B, start="2026-01-10", out_of_area_reason="10"), at("2026-01-11")),
        from_(COMM, rate_changed("PLC-2", 56000, "2026-01-20", reason="annual_uplift"), at("2026-02-15")),
        from_(COMM, placement_made("PLC-3", nhs=NHS_C, start="2026-01-10"), at("2026-01-10")),
        from_(COMM, ended("PLC-3", "2026-02-01", "discharged_home"), at("2026-02-01")),
        from_(COMM, review("PLC-NEVER", "oversight_visit", "2026-02-01"), at("2026-02-01")),
    ]
    for e in good:
        await kafka.send(comm, e)
    conflicting = from_(COMM, placement_made("PLC-2", nhs=NHS_B, start="2026-01-10", rate=99900), at("2026-01-12"))
    await kafka.send(comm, conflicting)
    await kafka.send(comm, from_(FAR, placement_made("PLC-4", nhs=NHS_D), at("2026-01-05")))  # FAR on COMM's topic
    bad_nhs = from_(COMM, placement_made("PLC-5"), at("2026-01-05")).to_dict()
    bad_nhs["data"]["nhs_number"] = BAD_NHS
    await kafka.send_raw(comm, json.dumps(bad_nhs).encode(), key=b"PLC-5")
    await kafka.send_raw(comm, b'{"specversion": "1.0", "id": "half', key=b"PLC-6")
    await kafka.send(
        comm, from_(COMM, placement_made("PLC-7", nhs=NHS_D, site="8Z00077", site_area=None), at("2026-01-05"))
    )

    assert await eventually(lambda: count(database, "SELECT count(*) FROM placements WHERE placement_id='PLC-1'"))
    # The local provider is no party to PLC-1 and may not change its rate.
    await kafka.send(local, from_(LOCAL, rate_changed("PLC-1", 1000, "2026-02-01"), at("2026-02-01")))

    # 3. The person in PLC-1 comes home: the distant stay ends with a transfer, the local one starts.
    await kafka.send(comm, from_(COMM, ended("PLC-1", "2026-04-10", "transfer"), at("2026-04-10", 16)))
    await kafka.send(
        local, from_(LOCAL, local_made("PLC-1H", nhs=NHS_A, start="2026-04-10", site_area=None), at("2026-04-10"))
    )
    # The provider's report is charged (and the move home counted) once the commissioner agrees it.
    agreement = PlacementAgreed(placement_id="PLC-1H", commissioner=COMM, daily_rate_pence=40000)
    await kafka.send(comm, from_(COMM, agreement, at("2026-04-11")))
    referrals = kafka.topics.internal("referrals")
    for bed_type, beds in (("adult_acute", 2), ("picu", 0)):
        capacity = LocalCapacityChanged.model_validate_json(
            json.dumps({"area": "QWU", "bed_type": bed_type, "available_beds": beds, "as_of": "2026-03-01T07:00:00Z"})
        )
        await kafka.send(referrals, new_event(capacity, source=service_source("referrals"), time=at("2026-03-01")))

    # What no contract allows is refused once, by the ingress; what only the register can judge,
    # by placements.
    refused = await kafka.read(kafka.topics.dlq("ingress"), until=lambda r: len(r) >= 3, timeout=60)
    assert Counter(dict(r.headers)["homeward-dlq-reason"].decode() for r in refused) == Counter(
        ["wrong-organisation", "invalid-payload", "malformed-json"]
    )
    dlq = await kafka.read(kafka.topics.dlq("placements"), until=lambda r: len(r) >= 4, timeout=60)
    reasons = Counter(dict(r.headers)["homeward-dlq-reason"].decode() for r in dlq)
    assert reasons == Counter(["conflict", "unknown-site"] + ["not-party"] * 2)
    (from_parking,) = [r for r in dlq if "homeward-dlq-parked-at" in dict(r.headers)]
    assert dict(from_parking.headers)["homeward-dlq-reason"] == b"not-party"
    # Replaying it puts it back where placements read it: the ingress's topic.
    assert dict(from_parking.headers)["homeward-dlq-topic"] == kafka.topics.internal("ingress").encode()
    assert parse_kafka(from_parking.value, from_parking.headers).data.placement_id == "PLC-2"
    unknown_site = next(r for r in dlq if dict(r.headers)["homeward-dlq-reason"] == b"unknown-site")
    assert b"provider_site_area" in dict(unknown_site.headers)["homeward-dlq-error"]
    assert await eventually(lambda: count(database, "SELECT count(*) FROM repatriations"))
    assert await eventually(lambda: count_is(2, database, "SELECT count(*) FROM local_capacity"))

    # The register.
    rows = {r["placement_id"]: r for r in await fetch(database, "SELECT * FROM placements")}
    assert sorted(rows) == ["PLC-1", "PLC-1H", "PLC-2", "PLC-3"]
    assert [rows[p]["out_of_area"] for p in ("PLC-1", "PLC-1H", "PLC-2", "PLC-3")] == [True, False, True, True]
    assert rows["PLC-1"]["provider_site_area"] == "QAB" and rows["PLC-1H"]["commissioner_area"] == "QWU"
    due = {
        r["placement_id"]: r["due_date"]
        for r in await fetch(database, "SELECT * FROM review_schedules WHERE review_type='oversight_visit'")
    }
    assert due == {"PLC-1": dt.date(2026, 4, 17), "PLC-2": dt.date(2026, 3, 7), "PLC-3": dt.date(2026, 3, 7)}
    assert [r["awaiting"] for r in await fetch(database, "SELECT * FROM parking_lot WHERE status='parked'")] == [
        "placement:PLC-NEVER"
    ]

    # 4. The scheduler, as of several dates; each run twice says nothing twice.
    for day in ("2026-02-25", "2026-02-25", "2026-03-20", "2026-03-20", "2026-03-22", "2026-03-22"):
        clock.set(dt.date.fromisoformat(day))
        await service.run_jobs_once()
    # 31 days on, the escalation reaches level 3, and the event parked since 5 January expires.
    clock.set(dt.date(2026, 4, 22))
    await service.run_jobs_once()

    # 5. What was published, exactly once each.
    internal = kafka.topics.internal("placements")

    def kinds(records: list[Any]) -> Counter[str]:
        return Counter(parse_kafka(r.value, r.headers).data.name for r in records)

    want = Counter(
        {
            "PlacementRegistered": 4,
            "PlacementAwaitingAgreement": 1,
            "PlacementRateChanged": 1,
            "PlacementClosed": 2,
            "PatientRepatriated": 1,
            "ReviewDueSoon": 1,
            "ReviewOverdue": 3,
        }
    )
    records = await kafka.read(internal, until=lambda r: kinds(r) == want, timeout=60, settle=1.0)
    events = [parse_kafka(r.value, r.headers) for r in records]
    assert kinds(records) == want
    by_type: dict[str, list[Any]] = {}
    for e in events:
        by_type.setdefault(e.data.name, []).append(e.data)
    (rate,) = by_type["PlacementRateChanged"]
    assert (rate.daily_rate_pence, rate.previous_daily_rate_pence, rate.commissioner) == (56000, 54500, COMM)
    (home,) = by_type["PatientRepatriated"]
    assert (home.from_placement_id, home.to_placement_id, home.explicit) == ("PLC-1", "PLC-1H", False)
    assert (home.from_daily_rate_pence, home.to_daily_rate_pence) == (54500, 40000)
    assert (home.from_site, home.to_site, home.repatriated_on) == ("8Z00001", "RYG01", dt.date(2026, 4, 10))
    (soon,) = by_type["ReviewDueSoon"]
    assert (soon.placement_id, soon.due_date, soon.days_until_due) == ("PLC-2", dt.date(2026, 3, 7), 10)
    overdue = sorted((o.placement_id, o.escalation_level, o.days_overdue) for o in by_type["ReviewOverdue"])
    assert overdue == [("PLC-2", 1, 13), ("PLC-2", 2, 15), ("PLC-2", 3, 46)]
    # Every event placements publishes is keyed by its placement's commissioner (contracts.topics.KEYED_BY).
    assert {(r.key, parse_kafka(r.value, r.headers).data.commissioner.encode()) for r in records} == {
        (COMM.encode(),) * 2
    }

    # 6. The API.
    app = service.server.config.app  # type: ignore[union-attr]
    case_manager, ops = staff_headers(COMM, "case-manager", sub="cm@05a"), ops_headers()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://placements", headers=case_manager
    ) as http:

        async def get(path: str, who: dict[str, str] | None = None, **params: Any) -> Any:
            response = await http.get(path, params=params, headers=who)
            assert response.status_code == 200, response.text
            return response.json()

        active = await get("/placements", commissioner=COMM, as_of="2026-03-01")
        assert [p["placement_id"] for p in active["placements"]] == ["PLC-1", "PLC-2"]
        assert [p["daily_rate_pence"] for p in active["placements"]] == [54500, 56000]
        home_now = await get("/placements", out_of_area="false", as_of="2026-04-15")
        assert [p["placement_id"] for p in home_now["placements"]] == ["PLC-1H"]
        assert (await get("/placements", cohort="dementia", as_of="2026-03-01"))["placements"] == []
        assert len((await get("/placements", bed_type="adult_acute", as_of="2026-03-01"))["placements"]) == 2

        detail = await get("/placements/PLC-2", as_of="2026-03-20")
        assert [(r["effective_date"], r["daily_rate_pence"]) for r in detail["rates"]] == [
            ("2026-01-10", 54500),
            ("2026-01-20", 56000),
        ]
        assert [(a["kind"], a["level"]) for a in detail["alerts"]] == [
            ("due_soon", 0),
            ("overdue", 1),
            ("overdue", 2),
            ("overdue", 3),
        ]
        assert "nhs_number" not in json.dumps(detail) and NHS_B not in json.dumps(detail)

        late = await get("/reviews/overdue", commissioner=COMM, as_of="2026-03-20")
        assert [(r["placement_id"], r["review_type"], r["days_overdue"]) for r in late["reviews"]] == [
            ("PLC-2", "oversight_visit", 13)
        ]
        coming = await get("/reviews/upcoming", as_of="2026-02-25", within_days=28)
        assert [(r["placement_id"], r["due_date"]) for r in coming["reviews"]] == [("PLC-2", "2026-03-07")]

        repatriations = await get("/repatriations", **{"from": "2026-04-01", "to": "2026-04-30"})
        assert [(r["from_placement_id"], r["to_placement_id"]) for r in repatriations["repatriations"]] == [
            ("PLC-1", "PLC-1H")
        ]
        assert (await get("/repatriations", **{"from": "2026-05-01"}))["repatriations"] == []

        candidates = await get("/repatriation-candidates", commissioner=COMM, as_of="2026-03-20")
        assert [(c["placement_id"], c["local_available_beds"]) for c in candidates["candidates"]] == [
            ("PLC-1", 2),
            ("PLC-2", 2),
        ]
        assert (await get("/repatriation-candidates", as_of="2026-02-28"))["candidates"] == []

        # The kit's parking lot: the event that waited for PLC-NEVER expired (and was dead-lettered).
        assert (await get("/admin/parked", ops))["entries"] == []
        expired = await get("/admin/parked", ops, status="expired")
        assert [p["awaiting"] for p in expired["entries"]] == ["placement:PLC-NEVER"]
        assert "event" not in expired["entries"][0]  # ops see why, not what it said
        counts = expired["counts"]
        # PLC-1's early review was applied; so, if it raced ahead of its placement on the
        # ingress's topic (a rate change is keyed by placement, a placement by commissioner),
        # was PLC-2's rate change: one or two applied, none left waiting.
        assert (counts["parked"], counts["rejected"], counts["expired"]) == (0, 1, 1)
        assert counts["applied"] in (1, 2)
        waited = await get("/placements/PLC-1", as_of="2026-03-20")
        assert [(p["event_type"], p["status"]) for p in waited["parked_events"]] == [
            ("homeward.ReviewCompleted.v1", "applied")
        ]

        before = await get("/summary", ops, as_of="2026-03-20")
        assert {k: before[k] for k in ("active_out_of_area", "active_in_area", "overdue_reviews", "repatriations")} == {
            "active_out_of_area": 2,
            "active_in_area": 0,
            "overdue_reviews": 1,
            "repatriations": 0,
        }
        after = await get("/summary", ops, as_of="2026-04-15")
        assert after["by_commissioner"][COMM]["active_in_area"] == 1 and after["repatriations"] == 1

        assert (await http.get("/placements", params={"as_of": "yesterday"})).status_code == 400
        assert (await http.get("/placements/PLC-404")).status_code == 404
        assert (await get("/readyz"))["status"] == "ready"
        assert "ReviewOverdue" in json.dumps(await get("/asyncapi.json"))
        assert (await http.get("/metrics", headers=ops)).status_code == 200

        # 6b. Scopes: another commissioner, a provider, finance, ops; and nobody signed in.
        other = staff_headers("05R", "case-manager")
        assert (await get("/placements", other, as_of="2026-03-01"))["placements"] == []
        assert (await get("/reviews/overdue", other, as_of="2026-03-20"))["reviews"] == []
        assert (await get("/reviews/upcoming", other, as_of="2026-02-25"))["reviews"] == []
        assert (await get("/repatriations", other))["repatriations"] == []
        assert (await get("/repatriation-candidates", other, as_of="2026-03-20"))["candidates"] == []
        assert (await get("/summary", other, as_of="2026-04-15"))["by_commissioner"] == {}
        mine = await get("/summary", as_of="2026-04-15")
        assert list(mine["by_commissioner"]) == [COMM] and "parked_events" not in mine
        for path, params in (
            ("/placements", {"commissioner": COMM}),
            ("/placements/PLC-2", {}),
            ("/reviews/overdue", {"commissioner": COMM}),
            ("/reviews/upcoming", {"commissioner": COMM}),
            ("/repatriations", {"commissioner": COMM}),
            ("/repatriation-candidates", {"commissioner": COMM}),
        ):
            denied = await http.get(path, params=params, headers=other)
            assert denied.status_code == 403, (path, denied.text)
            assert denied.headers["content-type"] == "application/problem+json"
            assert denied.json()["status"] == 403
            assert (await http.get(path, params=params, headers={"Authorization": ""})).status_code == 401
        for role in ("finance", "ops"):  # no patient references for them
            for path in ("/placements", "/placements/PLC-2", "/reviews/overdue", "/repatriations"):
                assert (await http.get(path, headers=staff_headers(COMM, role))).status_code == 403, (role, path)
        for role in ("case-manager", "provider", "finance"):
            assert (await http.get("/admin/parked", headers=staff_headers(COMM, role))).status_code == 403
            assert (await http.post("/admin/run-jobs", headers=staff_headers(COMM, role))).status_code == 403
        # Provider staff see the placements at their own sites, whoever commissions them.
        far, near = staff_headers(FAR, "provider"), staff_headers(LOCAL, "provider")
        at_far = await get("/placements", far, as_of="2026-03-01")
        assert [p["placement_id"] for p in at_far["placements"]] == ["PLC-1", "PLC-2"]
        assert (await get("/placements", near, as_of="2026-03-01"))["placements"] == []
        assert [p["placement_id"] for p in (await get("/placements", near, as_of="2026-04-15"))["placements"]] == [
            "PLC-1H"
        ]
        assert (await get("/placements/PLC-2", far))["placement_id"] == "PLC-2"
        assert (await http.get("/placements/PLC-2", headers=near)).status_code == 403
        assert [r["to_placement_id"] for r in (await get("/repatriations", near))["repatriations"]] == ["PLC-1H"]
        assert (await get("/reviews/overdue", near, as_of="2026-03-20"))["reviews"] == []

    # 6c. Every answer that showed placements is in the audit trail, with its references.
    trail = await fetch(database, "SELECT sub, organisation, role, action, query, refs FROM audit_log ORDER BY id")
    first = trail[0]
    assert (first["sub"], first["organisation"], first["role"], first["action"]) == (
        "cm@05a",
        COMM,
        "case-manager",
        "GET /placements",
    )
    assert set(first["refs"]) == {"PLC-1", "PLC-2", *[p["patient_ref"] for p in active["placements"]]}
    assert any(r["action"] == "GET /placements/PLC-2" and "PLC-2" in r["refs"] for r in trail)
    assert any(r["role"] == "provider" and r["organisation"] == FAR for r in trail)
    denied_reads = [r for r in trail if r["organisation"] == "05R" and r["refs"]]
    assert denied_reads == []  # refused answers showed nothing and record nothing

    # 7. No NHS number anywhere in the logs or on the internal topic.
    captured = capsys.readouterr()
    logs = captured_logs.text + captured.out + captured.err
    assert "placement registered" in logs  # the scan reads the service's real log output
    on_topic = b"".join(
        (r.key or b"") + (r.value or b"") + b"".join(k.encode() + v for k, v in r.headers) for r in records
    )
    for nhs in NHS_USED:
        spaced = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
        for form in (nhs, spaced):
            assert form not in logs
            assert form.encode() not in on_topic


async def test_a_providers_placement_is_charged_only_once_agreed_and_an_implausible_rate_is_held(
    service: ServiceRuntime, database: str, kafka: KafkaProbe
) -> None:
    """Issue 12: provider 8Z000 charged 05A £100m a day by stating a placement itself."""
    comm, far = kafka.topics.partner(COMM), kafka.topics.partner(FAR)

    def from_(org: str, payload: Payload, time: dt.datetime) -> Any:
        return new_event(payload, source=partner_source(org), time=time)

    # The provider reports two placements at its own site: one at a fair rate, one at £100m a day.
    await kafka.send(far, from_(FAR, placement_made("PLC-F1", nhs=NHS_A), at("2026-01-05")))
    await kafka.send(far, from_(FAR, placement_made("PLC-F2", nhs=NHS_B, rate=10_000_000_000), at("2026-01-05")))
    await kafka.send(far, from_(FAR, rate_changed("PLC-F1", 56000, "2026-01-20"), at("2026-01-21")))
    # The provider cannot agree its own report.
    await kafka.send(
        far,
        from_(FAR, PlacementAgreed(placement_id="PLC-F1", commissioner=COMM, daily_rate_pence=54500), at("2026-01-06")),
    )
    internal = kafka.topics.internal("placements")

    def kinds(records: list[Any]) -> Counter[str]:
        return Counter(parse_kafka(r.value, r.headers).data.name for r in records)

    waiting = Counter({"PlacementAwaitingAgreement": 2, "AmountHeld": 1, "PlacementRateChanged": 1})
    records = await kafka.read(internal, until=lambda r: kinds(r) == waiting, timeout=60, settle=1.0)
    assert kinds(records) == waiting  # no PlacementRegistered: nothing reaches the budget
    dlq = await kafka.read(kafka.topics.dlq("placements"), until=lambda r: len(r) >= 1, timeout=60)
    assert [dict(r.headers)["homeward-dlq-reason"] for r in dlq] == [b"not-authorised"]
    rows = {r["placement_id"]: r for r in await fetch(database, "SELECT * FROM placements")}
    assert {p: (r["reported_by"], r["agreed_by"], r["released"]) for p, r in rows.items()} == {
        "PLC-F1": (FAR, None, False),
        "PLC-F2": (FAR, None, False),
    }

    # The commissioner agrees both: the fair one is charged, the implausible one stays held.
    for pid, rate in (("PLC-F1", 54500), ("PLC-F2", 10_000_000_000)):
        agreed = PlacementAgreed(placement_id=pid, commissioner=COMM, daily_rate_pence=rate)
        await kafka.send(comm, from_(COMM, agreed, at("2026-01-07")))
    want = waiting + Counter({"PlacementRegistered": 1})
    records = await kafka.read(internal, until=lambda r: kinds(r) == want, timeout=60, settle=1.0)
    assert kinds(records) == want
    (registered,) = [
        e.data for e in (parse_kafka(r.value, r.headers) for r in records) if e.data.name == "PlacementRegistered"
    ]
    assert (registered.placement_id, registered.asserted_by, registered.principal) == (
        "PLC-F1",
        COMM,
        f"User:{kafka.topics.namespace}05A",
    )

    app = service.server.config.app  # type: ignore[union-attr]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://placements",
        headers=staff_headers(COMM, "commissioner"),
    ) as http:
        listed = (await http.get("/placements", params={"as_of": "2026-01-10"})).json()["placements"]
        assert {p["placement_id"]: p["status"] for p in listed} == {
            "PLC-F1": "agreed",
            "PLC-F2": "starting rate held for confirmation",
        }
