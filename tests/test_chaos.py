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
