"""The Coming Home scenario through the whole system: four services as separate processes
on the real Kafka, PostgreSQL and mail server. Every figure is checked against the oracle,
which works from the generated partner events alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from homeward.contracts import parse_kafka
from homeward.contracts.events import ReferralReceived
from homeward.testing import KafkaProbe, ops_headers, staff_headers

from homeward.cli.formatting import pounds

from . import oracle
from .conftest import AS_OF, BAD_INPUT_REASONS, System

pytestmark = pytest.mark.e2e

FY = "2026-27"
# The roles whose answers the data-protection scan reads, for each commissioner.
ROLES_READ = ("case-manager", "finance", "provider")


def _staff(org: str, role: str = "case-manager") -> dict[str, str]:
    return staff_headers(org, role)


def _commissioners(system: System) -> list[str]:
    return [c["code"] for c in system.scenario.reference["commissioners"]]


FY_START = dt.date(2026, 4, 1)


@pytest.fixture(scope="module")
def world(system: System) -> oracle.World:
    return oracle.replay(system.scenario)


def _internal(system: System, service: str, event_type: str) -> list[Any]:
    probe = KafkaProbe(system.infra, system.namespace)

    async def read() -> list[Any]:
        try:
            records = await probe.read(probe.topics.internal(service), timeout=10, until=lambda r: False)
        finally:
            await probe.close()
        return [e for e in (parse_kafka(r.value, r.headers) for r in records) if e.type == event_type]

    return asyncio.run(read())


def test_bad_input_is_dead_lettered_with_its_reason_and_nothing_else_is(system: System) -> None:
    probe = KafkaProbe(system.infra, system.namespace)

    async def read() -> dict[str, list[str]]:
        out = {}
        try:
            for svc in ("ingress", "referrals", "placements", "budget", "notifications"):
                records = await probe.read(probe.topics.dlq(svc), timeout=3, until=lambda r: False)
                out[svc] = sorted(dict(r.headers).get("homeward-dlq-reason", b"").decode() for r in records)
        finally:
            await probe.close()
        return out

    dead = asyncio.run(read())
    # The ingress, the only reader of partner topics, refuses each bad record once, with its
    # reason, and notices the reused event id; no valid scenario event is refused anywhere,
    # and no service sees what the ingress refused.
    assert dead["ingress"] == sorted([*BAD_INPUT_REASONS, "conflicting-duplicate"])
    for svc in ("referrals", "placements", "budget", "notifications"):
        assert dead[svc] == [], svc


def test_register_matches_the_partners_events(system: System, world: oracle.World) -> None:
    expected = oracle.active(world, AS_OF)
    got = []
    for c in _commissioners(system):  # each commissioner's case manager sees their own
        mine = system.get("placements", "/placements", _staff(c), as_of=AS_OF.isoformat())["placements"]
        assert {p["commissioner"] for p in mine} <= {c}
        got += mine
    assert {p["placement_id"]: p["out_of_area"] for p in got} == expected
    summary = system.get("placements", "/summary", as_of=AS_OF.isoformat())
    assert summary["active_out_of_area"] == sum(expected.values())
    assert summary["active_in_area"] == sum(not v for v in expected.values())
    assert any(expected.values())
    assert not all(expected.values())


def test_providers_reports_are_charged_only_once_their_commissioners_agree_them(
    system: System, world: oracle.World
) -> None:
    """The scenario's providers report some placements themselves; the commissioners agree all
    but the latest, which stays in the register awaiting agreement and costs its budget nothing."""
    unagreed = set(world.placements) - oracle.agreed(world)
    assert unagreed, "the scenario should leave a provider's report unagreed"
    assert any(p.reported_by != p.commissioner and p.agreed for p in world.placements.values())
    for pid in unagreed:
        who = _staff(world.placements[pid].commissioner)
        detail = system.get("placements", f"/placements/{pid}", who, as_of=AS_OF.isoformat())
        assert (detail["status"], detail["agreed_by"]) == ("awaiting commissioner agreement", None)
        r = httpx.get(system.url("budget", f"/placements/{pid}/ledger"), headers=who, timeout=60)
        assert r.status_code == 404 or (r.json()["streams"], r.json()["transfers"]) == ([], []), pid
    registered = _internal(system, "placements", "homeward.PlacementRegistered.v1")
    assert {e.data.placement_id for e in registered} == oracle.agreed(world)
    assert all(e.data.asserted_by == world.placements[e.data.placement_id].commissioner for e in registered)
    waiting = _internal(system, "placements", "homeward.PlacementAwaitingAgreement.v1")
    assert {e.data.placement_id for e in waiting} == {
        p.id for p in world.placements.values() if p.reported_by != p.commissioner
    }


def test_an_implausible_invoice_is_held_and_the_corrected_one_matched(system: System, world: oracle.World) -> None:
    held = oracle.held_invoices(world)
    assert held, "the scenario should contain an invoice typed in pounds as pence"
    statuses: dict[str, str] = {}
    for c in system.scenario.reference["commissioners"]:
        for i in system.get("budget", f"/invoices/{c['code']}", _staff(c["code"], "finance"))["invoices"]:
            statuses[i["invoice_id"]] = i["status"]
    assert {i for i, st in statuses.items() if st == "held"} == held
    for invoice_id in held:  # the provider's corrected invoice, under the id without the slip's suffix
        assert statuses[invoice_id.removesuffix("-X")] == "matched"
    alerts = _internal(system, "budget", "homeward.AmountHeld.v1")
    assert sorted(e.data.invoice_id for e in alerts) == sorted(held)


def test_every_review_overdue_exactly_once(system: System, world: oracle.World) -> None:
    expected = oracle.chased(world, AS_OF)  # nobody is chased about a discharged person
    events = _internal(system, "placements", "homeward.ReviewOverdue.v1")
    got = Counter((e.data.placement_id, e.data.review_type.value) for e in events)
    assert set(got) == set(expected)
    assert all(n == 1 for n in got.values()), [k for k, n in got.items() if n > 1]
    for e in events:
        due, days, level = expected[(e.data.placement_id, e.data.review_type.value)]
        assert (e.data.due_date, e.data.days_overdue, e.data.escalation_level) == (due, days, level)
    assert expected, "the scenario should contain missed reviews"


def test_every_patient_repatriated_exactly_once(system: System, world: oracle.World) -> None:
    expected = oracle.repatriations(world)
    events = _internal(system, "placements", "homeward.PatientRepatriated.v1")
    got = [(e.data.from_placement_id, e.data.to_placement_id) for e in events]
    assert sorted(got) == sorted(expected)
    for e in events:
        src, dst = world.placements[e.data.from_placement_id], world.placements[e.data.to_placement_id]
        assert e.data.from_daily_rate_pence == src.rate_on(src.end - dt.timedelta(days=1))  # type: ignore[operator]
        assert e.data.to_daily_rate_pence == dst.rate_on(dst.start)
        assert (e.data.from_site, e.data.to_site) == (src.site, dst.site)
    assert expected, "the scenario should bring people home"


def test_ledger_positions_to_the_penny(system: System, world: oracle.World) -> None:
    spent = oracle.spent(world, FY_START, AS_OF)
    for c in system.scenario.reference["commissioners"]:
        code = c["code"]
        pos = system.get(
            "budget", f"/positions/{code}", _staff(code, "finance"), financial_year=FY, as_of=AS_OF.isoformat()
        )
        assert pos["allocated_pence"] == world.allocations[(code, FY)], code
        assert pos["spent_pence"] == spent.get(code, 0), code
    system.get("budget", "/check")  # 200 only when debits equal credits and every balance matches its entries


def _mails(system: System) -> list[dict[str, Any]]:
    r = httpx.get(system.infra.mail_web_url.rstrip("/") + "/email", timeout=30)
    r.raise_for_status()
    return [m for m in r.json() if any(t["address"].endswith(system.mail_domain) for t in m.get("to", []))]


def _uk_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(ZoneInfo("Europe/London")).date()


def _subject_date(subject: str) -> dt.date:
    """The date in "Action needed by 19 Mar 2026...": when the action is due."""
    return dt.datetime.strptime(" ".join(subject.split()[3:6]).rstrip(":"), "%d %b %Y").date()


def _suppressed(system: System) -> list[dict[str, Any]]:
    """Every organisation's suppressed alerts, each read as that organisation's staff (they name
    placements: not for ops)."""
    rows: list[dict[str, Any]] = []
    for org in _commissioners(system):
        own: list[dict[str, Any]] = []
        while True:
            page = system.get("notifications", "/notifications/suppressed", _staff(org), limit=1000, offset=len(own))[
                "notifications"
            ]
            own += page
            if len(page) < 1000:
                break
        rows += own
    return rows


def test_emails_are_about_today_and_reach_the_right_people(system: System, world: oracle.World) -> None:
    """Each alert the oracle owes staff is, by the date in its subject against the scenario's
    today: emailed on its own (due today or later), in the recipient's one daily digest (due in
    the last 14 days), or suppressed with its reason (longer ago: history)."""

    def address(role: str, org: str) -> str:
        return f"{role.replace('_', '.')}@{org.lower()}.{system.mail_domain}"

    awaiting = {
        e.data.placement_id: _uk_day(e.time)
        for e in _internal(system, "placements", "homeward.PlacementAwaitingAgreement.v1")
    }
    held = {
        e.data.invoice_id: _uk_day(e.time)
        for e in _internal(system, "budget", "homeward.AmountHeld.v1")
        if e.data.invoice_id
    }
    owed = oracle.alerts(world, AS_OF, awaiting, held)
    by_kind: dict[str, list[oracle.Alert]] = {"current": [], "late": [], "history": []}
    for a in owed:
        by_kind[oracle.timeliness(a.due_by, AS_OF)].append(a)
    assert by_kind["current"] and by_kind["history"], "the scenario should alert about today and about history"

    mails = _mails(system)
    digests = [m for m in mails if "in your Homeward digest for" in m["subject"]]
    alerts = [m for m in mails if m not in digests]

    # On their own: exactly the current alerts, and nothing whose date has passed.
    keywords = (
        "overdue",
        "new out-of-area placement",
        "moved home to",
        "agree or query placement",
        "confirm or query invoice",
    )
    expected = Counter((address(a.role, a.org), a.keyword, a.reference) for a in by_kind["current"])
    got: Counter[tuple[str, str, str]] = Counter()
    for m in alerts:
        subject = m["subject"]
        assert _subject_date(subject) >= AS_OF, subject
        for keyword in keywords:
            if keyword in subject:
                pid = next((p for p in world.placements if f"placement {p} " in subject + " "), None)
                got[(m["to"][0]["address"], keyword, pid or "?")] += 1
    assert got == expected

    # Nobody is chased about a discharged person.
    active = oracle.active(world, AS_OF)
    for m in alerts:
        if " overdue " in m["subject"] or " due " in m["subject"]:
            pid = next(p for p in world.placements if f"placement {p} " in m["subject"] + " ")
            assert pid in active, m["subject"]

    # One digest per recipient with late alerts, that day, holding them.
    recipients = Counter(m["to"][0]["address"] for m in digests)
    assert all(n == 1 for n in recipients.values()), recipients
    late: dict[str, set[str]] = {}
    for a in by_kind["late"]:
        late.setdefault(address(a.role, a.org), set()).add(a.reference)
    assert set(late) <= set(recipients)
    for m in digests:
        assert m["subject"].endswith(f"digest for {AS_OF.day} {AS_OF:%b %Y}")
        assert AS_OF - dt.timedelta(days=oracle.HISTORY_AFTER_DAYS) <= _subject_date(m["subject"]) < AS_OF
        for reference in late.get(m["to"][0]["address"], set()):
            assert reference in m["text"], (m["subject"], reference)

    # History: recorded as suppressed, with the reason, never emailed.
    suppressed = _suppressed(system)
    logged = {(n["recipient"], n["reference"]) for n in suppressed}
    for a in by_kind["history"]:
        assert (address(a.role, a.org), a.logged_as or a.reference) in logged, a
    assert all(n["suppressed_reason"].startswith("history: the action was due by ") for n in suppressed)
    for m in mails:
        assert not any(n["subject"] == m["subject"] and n["recipient"] == m["to"][0]["address"] for n in suppressed)

    nhs_numbers = {p.nhs for p in world.placements.values()}
    blob = json.dumps(mails)
    assert not [n for n in nhs_numbers if n in blob]
    summary = system.get("notifications", "/summary")
    assert summary["emails"]["sent"] == len(mails)
    assert summary["emails"]["by_kind"]["digest"]["sent"] == len(digests)
    assert summary["suppressed"] == len(suppressed)
    print(
        f"emails: {len(alerts)} alerts, {len(digests)} digests; {len(suppressed)} suppressed; "
        f"oracle: {len(by_kind['current'])} current, {len(by_kind['late'])} late, {len(by_kind['history'])} history"
    )


def _read_api_answers(system: System) -> dict[str, str]:
    """Every read API of the running services, answered for the scenario's organisations and a
    sample of its placements and referrals: path -> the answer's text."""
    commissioners = [c["code"] for c in system.scenario.reference["commissioners"]]
    placements = sorted({e.data.placement_id for _, e in system.scenario.events if hasattr(e.data, "placement_id")})
    referrals = [f"REF-HTTP-{n}" for n in range(len(system.http_nhs_numbers))]
    as_of = {"as_of": AS_OF.isoformat()}
    paths: list[tuple[str, str, dict[str, str]]] = [
        ("placements", "/placements", {}),
        ("placements", "/reviews/overdue", as_of),
        ("placements", "/reviews/upcoming", as_of),
        ("placements", "/repatriations", {}),
        ("placements", "/repatriation-candidates", as_of),
        ("placements", "/admin/parked", {"status": "all"}),
        ("placements", "/summary", as_of),
        ("referrals", "/referrals/open", {}),
        ("referrals", "/capacity", {}),
        ("referrals", "/unmet-need", {}),
        ("referrals", "/time-to-placement", {}),
        ("referrals", "/summary", {}),
        ("budget", "/positions", {"financial_year": FY, **as_of}),
        ("notifications", "/notifications", {}),
        ("notifications", "/notifications/failed", {}),
        ("notifications", "/notifications/suppressed", {}),
        ("notifications", "/subscriptions", {}),
        ("notifications", "/summary", {}),
    ]
    paths += [("placements", f"/placements/{p}", {}) for p in placements[:20]]
    paths += [("budget", f"/placements/{p}/ledger", {}) for p in placements[:20]]
    paths += [("referrals", f"/referrals/{r}", {}) for r in referrals]
    for c in commissioners:
        paths += [
            ("budget", f"/positions/{c}", {"financial_year": FY, **as_of}),
            ("budget", f"/providers/{c}/spend", {"financial_year": FY}),
            ("budget", f"/invoices/{c}", {}),
        ]
    answers = {}
    callers = {"ops": ops_headers()} | {f"{c}:{role}": _staff(c, role) for c in commissioners for role in ROLES_READ}
    for service, path, params in paths:
        for who, headers in callers.items():  # each answer as every kind of caller sees it
            r = httpx.get(system.url(service, path), params=params, headers=headers, timeout=60)
            assert r.status_code < 500, f"{service}{path}: {r.status_code}"
            answers[f"{service}{path} as {who}"] = r.text
    return answers


async def _database_text(dsn: str) -> dict[str, str]:
    """Every row of every table in the database's public schema, as text: table -> rows."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        return {t: "\n".join(r[0] for r in await conn.fetch(f'SELECT t::text FROM "{t}" t')) for t in tables}
    finally:
        await conn.close()


def test_no_identifiable_data_outside_the_partner_data(system: System, world: oracle.World) -> None:
    """The data-protection scan: every NHS number of the input, those posted over HTTP included,
    must be found nowhere but where the partner data may be: the partner topics and dead-letter
    topics (under their ACLs, docs/kafka-security.md), the ingress's topic of accepted partner
    events (read only by the services that act on them), and the referrals and placements
    databases. (The scenario's input carries no names: there is no name to look for.)"""
    nhs_numbers = {p.nhs for p in world.placements.values()} | set(system.http_nhs_numbers)
    nhs_numbers |= {e.data.nhs_number for _, e in system.scenario.events if hasattr(e.data, "nhs_number")}
    assert system.http_nhs_numbers and len(nhs_numbers) > 100

    def hits(text: str) -> list[str]:
        return sorted(n for n in nhs_numbers if n in text)

    # The HTTP-posted referrals went through: the referrals service knows them.
    referrer = _staff(system.scenario.reference["commissioners"][0]["code"])
    for n in range(len(system.http_nhs_numbers)):
        assert system.get("referrals", f"/referrals/REF-HTTP-{n}", referrer)["referral_id"] == f"REF-HTTP-{n}"

    # Every service log.
    for svc in ("ingress", "referrals", "placements", "budget", "notifications"):
        log = system.log(svc)
        assert "service started" in log
        assert not hits(log), f"NHS numbers in the {svc} log"

    # Every internal topic of service facts, values and headers.
    probe = KafkaProbe(system.infra, system.namespace)

    async def internal_bytes() -> dict[str, str]:
        out = {}
        try:
            for svc in ("referrals", "placements", "budget", "notifications"):
                records = await probe.read(probe.topics.internal(svc), timeout=5, until=lambda r: False)
                out[svc] = "\n".join(
                    (r.value or b"").decode(errors="replace")
                    + "".join(v.decode(errors="replace") for _, v in r.headers)
                    for r in records
                )
        finally:
            await probe.close()
        return out

    topics = asyncio.run(internal_bytes())
    assert all(topics.values()), "every service publishes something in the scenario"
    for svc, text in topics.items():
        assert not hits(text), f"NHS numbers on homeward.{svc}.v1"

    # The budget and notifications databases, every table, every row.
    for svc in ("budget", "notifications"):
        for table, rows in asyncio.run(_database_text(system.databases[svc])).items():
            assert not hits(rows), f"NHS numbers in {svc}.{table}"

    # Every delivered email: subject, text, HTML and headers.
    mails = _mails(system)
    assert mails
    for m in mails:
        assert not hits(json.dumps(m)), f"NHS numbers in the email {m.get('subject')!r}"

    # Every answer of the read APIs.
    for path, text in _read_api_answers(system).items():
        assert not hits(text), f"NHS numbers in the answer of {path}"

    # The scan can find what it looks for: the ingress's topic holds the HTTP-posted referrals.
    ingress = asyncio.run(probe.read(probe.topics.internal("ingress"), timeout=5, until=lambda r: False))
    assert set(system.http_nhs_numbers) <= set(hits("\n".join((r.value or b"").decode() for r in ingress)))


def test_main_job_summary_shows_the_oracles_figures(system: System, world: oracle.World) -> None:
    from homeward.cli import runner

    commissioners = [c["code"] for c in system.scenario.reference["commissioners"]]
    summary = runner.fetch_summary(commissioners, AS_OF, ports=system.ports)
    active = oracle.active(world, AS_OF)
    overdue_now = [k for k in oracle.overdue(world, AS_OF) if k[0] in active]
    spent = oracle.spent(world, FY_START, AS_OF)
    p = summary["placements"]
    assert (p["active_out_of_area"], p["active_in_area"]) == (sum(active.values()), sum(not v for v in active.values()))
    assert p["overdue_reviews"] == len(overdue_now)
    assert p["repatriations"] == len(oracle.repatriations(world))
    assert {c: summary["positions"][c]["spent_pence"] for c in commissioners} == {
        c: spent.get(c, 0) for c in commissioners
    }
    mails = _mails(system)
    assert summary["notifications"]["emails"]["sent"] == len(mails)

    with runner.console.capture() as captured:
        runner.print_summary(summary, system.infra.mail_web_url)
    text = captured.get()
    assert (
        f"Active placements: {sum(active.values())} out of area, {sum(not v for v in active.values())} in area" in text
    )
    assert f"Overdue reviews: {len(overdue_now)}" in text
    assert f"Emails sent: {len(mails)} " in text
    assert f"Alerts suppressed: {summary['notifications']['suppressed']} " in text
    for c in commissioners:
        assert pounds(spent.get(c, 0)) in text
    assert system.infra.mail_web_url in text


def test_staff_cli_answers_from_the_running_services(system: System, world: oracle.World) -> None:
    """`homeward placements ...` and `homeward position` as staff run them, against the services."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env.update({f"HOMEWARD_{svc.upper()}_URL": system.url(svc, "") for svc in system.ports})
    env["COLUMNS"] = "200"

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "homeward.cli", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def each(*args: str) -> list[dict[str, Any]]:
        """The answer for every commissioner, each signed in as its own staff (a token the CLI
        signs with the checkout's local key for the commissioner named)."""
        return [json.loads(cli(*args, "--commissioner", c, "--json")) for c in _commissioners(system)]

    active = oracle.active(world, AS_OF)
    listed = each("placements", "list", "--as-of", AS_OF.isoformat())
    assert {p["placement_id"] for a in listed for p in a["placements"]} == set(active)
    out_of_area = each("placements", "list", "--out-of-area", "--as-of", AS_OF.isoformat())
    assert {p["placement_id"] for a in out_of_area for p in a["placements"]} == {k for k, v in active.items() if v}

    overdue_now = {k for k in oracle.overdue(world, AS_OF) if k[0] in active}
    overdue = each("placements", "overdue", "--as-of", AS_OF.isoformat())
    assert {(r["placement_id"], r["review_type"]) for a in overdue for r in a["reviews"]} == overdue_now

    # A token in HOMEWARD_TOKEN is used as given: another organisation's list is refused.
    first, second = _commissioners(system)[:2]
    env["HOMEWARD_TOKEN"] = staff_headers(first, "case-manager")["Authorization"].split()[1]
    refused = subprocess.run(
        [sys.executable, "-m", "homeward.cli", "placements", "list", "--commissioner", second],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "403" in refused.stderr
    del env["HOMEWARD_TOKEN"]

    moves = set()
    for c in _commissioners(system):  # signed in as each commissioner's staff in turn
        answer = json.loads(cli("placements", "repatriations", "--commissioner", c, "--json"))
        moves |= {(r["from_placement_id"], r["to_placement_id"]) for r in answer["repatriations"]}
    assert moves == oracle.repatriations(world)

    code = system.scenario.reference["commissioners"][0]["code"]
    spent = oracle.spent(world, FY_START, AS_OF).get(code, 0)
    pos = json.loads(cli("position", code, "--financial-year", FY, "--as-of", AS_OF.isoformat(), "--json"))
    assert pos["spent_pence"] == spent
    table = cli("position", code, "--financial-year", FY, "--as-of", AS_OF.isoformat())
    assert pounds(spent, pennies=True) in table


def test_triage_is_what_the_counts_said_at_each_referrals_time(system: System) -> None:
    """Each referral's local options are those of the counts stated as of its event time, however
    the partner topics were interleaved when consumed (the oracle works from the events alone),
    and a withdrawn referral is recorded as such and no longer waiting."""
    expected = oracle.triage(system.scenario)
    withdrawn = oracle.withdrawals(system.scenario)
    assert any(expected.values()) and not all(expected.values())
    commissioner_of = {
        e.data.referral_id: e.data.commissioner
        for _, e in system.scenario.events
        if isinstance(e.data, ReferralReceived)
    }
    for referral_id, options in expected.items():
        got = system.get("referrals", f"/referrals/{referral_id}", _staff(commissioner_of[referral_id]))
        assert [(o["site"], o["available_beds"]) for o in got["local_options_at_triage"]] == options, referral_id
        when = withdrawn.get(referral_id)
        assert (got["withdrawal"] or {}).get("withdrawn_at") == (when.isoformat() if when else None), referral_id
        if when is not None:
            assert not got["open"], referral_id
