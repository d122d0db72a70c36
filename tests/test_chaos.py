"""The fault campaign at CI size (docs/chaos.md): a seeded scenario of about 200 partner events
played on a private stack of its own (never the shared one: it restarts Kafka and PostgreSQL and
stops SMTP) while every service is killed with SIGKILL twice, Kafka and PostgreSQL restart once,
SMTP stops for 30 s and bad records, hand-written and hypothesis-generated, are mixed in. Fails
on any loss, any double, any bad record not dead-lettered exactly once with a reason, any
partition or relay left stuck, a service that crashed by itself, the ledger check, an outbox
gauge reading 0 while rows wait, or a flood of log lines while Kafka is away. `make chaos`
runs the same at 100,000 events."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The campaign lives beside benchmarks/ at the repository's root (`python -m chaos` from there).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaos.__main__ import CI
from chaos.campaign import OUTAGE_LOG_LINES_MAX, Options, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]


def test_nothing_lost_nothing_doubled_every_bad_record_dead_lettered_once() -> None:
    options = Options(seed=14)
    for key, value in CI.items():
        setattr(options, key, value)
    report = run(options)
    print(report.table())
    assert report.settled, report.table()
    assert not report.crashed, report.table()
    assert sum(report.lost.values()) == 0, report.table()
    assert sum(report.doubled.values()) == 0, report.table()
    assert report.bad_sent > 40 and report.bad_generated > 0
    # Emails were compared per (event, recipient) with the published alerts and with the oracle.
    assert report.emails_sent > 0 and report.emails_owed["email"] > 0 and report.emails_oracle > 0, report.table()
    assert (report.dead_lettered_once, report.bad_missing, report.bad_twice) == (report.bad_sent, [], []), (
        report.table()
    )
    assert sum(report.stuck.values()) == 0, report.table()
    assert not report.invariant_problems, report.table()
    assert not report.gauge_lies, report.table()
    assert report.outage_log_lines and max(report.outage_log_lines.values()) <= OUTAGE_LOG_LINES_MAX, report.table()
    # The faults were injected: each service killed, Kafka and PostgreSQL restarted, SMTP stopped.
    assert all(
        report.faults[f"kill -9 {svc}"] == CI["kills_per_service"]
        for svc in ("ingress", "referrals", "placements", "budget", "notifications")
    )
    assert report.faults["Kafka restarted"] == report.faults["PostgreSQL restarted"] == 1
    assert report.passed


def test_the_report_fails_on_each_kind_of_finding() -> None:
    """The verdict the campaign and `make chaos` exit with: a clean report passes, and each
    finding alone fails it."""
    from chaos.campaign import Report

    def clean() -> Report:
        return Report(seed=1, settled=True, bad_sent=3, dead_lettered_once=3, outage_log_lines={"ingress": 3})

    assert clean().passed
    findings = [
        lambda r: setattr(r, "settled", False),
        lambda r: r.crashed.append("budget"),
        lambda r: r.lost.update({"ReviewOverdue": 1}),
        lambda r: r.doubled.update({"PatientRepatriated": 1}),
        lambda r: r.bad_missing.append("deep-nesting"),
        lambda r: r.bad_twice.append("tombstone"),
        lambda r: setattr(r, "dead_lettered_once", 2),
        lambda r: r.stuck.update({"budget outbox parked": 1}),
        lambda r: r.invariant_problems.append("journal unbalanced"),
        lambda r: r.gauge_lies.append("budget: gauge 0 with 4..4 rows pending"),
        lambda r: r.outage_log_lines.update({"budget": OUTAGE_LOG_LINES_MAX + 1}),
    ]
    for finding in findings:
        report = clean()
        finding(report)
        assert not report.passed
        assert "FAIL" in report.table()


def test_the_email_comparison_counts_each_email_lost_or_doubled_per_event_and_recipient() -> None:
    """The email comparison alone, on what a run would have read: one overdue review owed by the
    oracle and published by placements, recorded by notifications and held by the catcher. A
    clean set counts nothing; an email the catcher lacks, a second notification for an event
    nobody published, or an alert the oracle owes but nobody raised each count."""
    import datetime as dt
    from collections import Counter

    from homeward.contracts import new_event
    from homeward.contracts.events import ReviewOverdue
    from homeward.contracts.vocab import BedType, Cohort, ReviewType

    from chaos.campaign import AS_OF, Report, email_findings
    from tests.e2e import oracle

    due = AS_OF - dt.timedelta(days=10)
    overdue = ReviewOverdue(
        placement_id="PLC-05A-000123",
        patient_ref="pt_3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c1e",
        commissioner="05A",
        provider="8HA03",
        provider_site="8HA0301",
        bed_type=BedType.PICU,
        cohort=Cohort.MENTAL_HEALTH,
        out_of_area=True,
        review_type=ReviewType.OVERSIGHT_VISIT,
        due_date=due,
        days_overdue=10,
        escalation_level=1,
        last_review_date=None,
    )
    event = new_event(overdue, source="homeward/placements", id="evt-overdue-1")
    address = "case.manager@05a.nhs.invalid"
    subject = (
        f"Action needed by 27 Nov 2026: Oversight visit overdue 10 days — placement {overdue.placement_id} at 8HA0301"
    )
    owed = [oracle.Alert("case_manager", "05A", "overdue", overdue.placement_id, AS_OF + dt.timedelta(days=7))]

    def findings(rows: list[dict[str, Any]], mail: list[dict[str, Any]], owe: list[oracle.Alert] = owed) -> Report:
        r = Report(seed=1)
        email_findings(
            r,
            staff=[{"email": address, "org": "05A", "role": "case_manager"}],
            routes={("ReviewOverdue", "case_manager"): (1, None), ("ReviewOverdue", "clinical_lead"): (2, None)},
            published={"referrals": [], "placements": [event], "budget": []},
            emails=[
                {"message_id": row["message_id"], "status": "sent", "kind": "alert", "to_address": address}
                for row in rows
            ],
            rows=rows,
            by_address={address: mail},
            elsewhere=0,
            owed=owe,
            timeliness=oracle.timeliness,
        )
        return r

    row: dict[str, Any] = {
        "cause_event_id": event.id,
        "event_name": "ReviewOverdue",
        "email_address": address,
        "reference": overdue.placement_id,
        "subject": subject,
        "digest": False,
        "status": "sent",
        "message_id": "<n1@homeward>",
        "email_kind": "alert",
    }
    message: dict[str, Any] = {"messageId": "<n1@homeward>", "subject": subject, "to": [{"address": address}]}

    clean = findings([row], [message])
    assert (sum(clean.lost.values()), sum(clean.doubled.values())) == (0, 0), clean.table()
    assert (clean.emails_sent, clean.emails_owed, clean.emails_oracle) == (1, Counter({"email": 1}), 1)

    not_delivered = findings([row], [])
    assert not_delivered.lost["emails not delivered"] == 1
    assert not_delivered.lost["emails (event, recipient)"] == 1
    assert not_delivered.lost["emails vs oracle"] == not_delivered.lost["emails in the catcher vs oracle"] == 1

    stray = {**row, "cause_event_id": "evt-nobody-published", "message_id": "<n2@homeward>"}
    doubled = findings([row, stray], [message, {**message, "messageId": "<n2@homeward>"}])
    assert doubled.doubled["emails (event, recipient)"] == 1
    assert doubled.doubled["emails vs oracle"] == doubled.doubled["emails in the catcher vs oracle"] == 1

    resent = findings([row], [message, message])  # the same Message-ID twice: counted, not a double
    assert (resent.emails_resent, sum(resent.doubled.values())) == (1, 0)

    twice_owed = findings([row], [message], owe=owed * 2)
    assert twice_owed.lost["emails vs oracle"] == twice_owed.lost["emails in the catcher vs oracle"] == 1
    assert not twice_owed.passed
