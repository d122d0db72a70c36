"""The fault campaign: a seeded scenario played through every service on a private stack
while the campaign kills services, restarts Kafka and PostgreSQL, stops SMTP and sends bad
records; then everything is compared with the end-to-end oracle (docs/chaos.md).

Nothing here reads the services' HTTP read APIs: the outcome is read from their databases
(through each service's own read code: the placements register, the budget's balances and
ledger check), their topics and the mail catcher. Only /readyz, /metrics and the scheduled
jobs' trigger are used over HTTP, as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from homeward.contracts import Event, parse_kafka
from homeward.contracts.access import service_principal
from homeward.contracts.events import PlacementMade
from homeward.devstack import StackInfo
from homeward.kit.kafka import client_options, ensure_topics
from homeward.kit.outbox import decode_headers
from homeward.kit.settings import KafkaSettings
from homeward.kit.topics import Topics
from homeward.testing import free_port

from homeward.cli import runner
from homeward.scenario import Scenario, ScenarioConfig, generate

from .bad import BadRecord, conflicting_duplicate, generated, hand_written, interleave
from .stack import PrivateStack, chaos_root, free_ports

Log = Callable[[str], None]

AS_OF = dt.date(2026, 11, 20)
FY, FY_START = "2026-27", dt.date(2026, 4, 1)
DLQ_TOPIC, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON = (
    "homeward-dlq-topic",
    "homeward-dlq-offset",
    "homeward-dlq-partition",
    "homeward-dlq-reason",
)
PENDING_SQL = "SELECT count(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NULL"
# More warning and error lines than this from one service while Kafka is away is the flood of
# issue 14 (about 40,000 lines in 20 s) coming back; a quiet service logs a few per distinct
# message and interval.
OUTAGE_LOG_LINES_MAX = 500

# How an alert reaches a member of staff, by its timeliness (docs/notifications.md): an email of
# its own, in the daily digest, or recorded as suppressed (history: never emailed).
HOW = {"current": "email", "late": "digest", "history": "suppressed"}
# The alerts the end-to-end oracle predicts from the partner events alone: the name notifications
# logs them under, and the words their subject carries (``oracle.Alert.keyword``). Of AmountHeld,
# held invoices only.
ORACLE_ALERTS = {
    "ReviewOverdue": "overdue",
    "PlacementRegistered": "new out-of-area placement",
    "PatientRepatriated": "moved home to",
    "PlacementAwaitingAgreement": "agree or query placement",
    "AmountHeld": "confirm or query invoice",
}
# The alerts it does not predict, and why. Each is still checked per (event, recipient), by
# Message-ID, against the events the services published; not against the partner events.
NOT_PREDICTED = {
    "BudgetThresholdBreached": "depends on how a budget replica interleaved the commissioner's two topics "
    "(allocations and placements): a known limitation",
    "InvoiceVarianceFound": "depends on whether an invoice was matched before or after a rate change "
    "on another topic (a re-assessment with another accrual raises a second alert)",
    "ReviewDueSoon": "not modelled by the oracle",
    "LocalCapacityUnavailable": "not modelled by the oracle",
    "ReferralWaitBreached": "not modelled by the oracle",
    "AmountHeld": "held daily rates: not modelled by the oracle (held invoices are)",
}


@dataclass
class Options:
    events: int = 100_000  # partner events, about: the scenario is sized to give this many
    seed: int = 14
    kills_per_service: int = 3
    generated_bad: int = 60  # hypothesis-generated bad records (hand-written ones come on top)
    duplicates: int = 3  # reused ids with other content
    smtp_outage_s: float = 30.0
    kafka_down_s: float = 8.0
    postgres_down_s: float = 8.0
    gap_s: tuple[float, float] = (1.0, 5.0)  # between a chunk of the scenario and the next fault
    settle_timeout_s: float = 3600.0
    keep: bool = False  # keep the private stack's data (logs are always kept)
    ports: dict[str, int] | None = None  # the private stack's; None: the defaults, or free ones if taken
    log: Log = print


def scenario_for(events: int, seed: int) -> Scenario:
    """A Coming Home scenario of about ``events`` partner events (about 6 per placement); at
    national size, the national mix of commissioners and providers."""
    placements = max(12, events // 6)
    if placements >= 2000:
        from benchmarks.e2e import national

        config = dataclasses.replace(national(placements, seed), as_of=AS_OF)
    else:
        config = ScenarioConfig(seed=seed, placements=placements, as_of=AS_OF)
    return generate(config)


# ---- the report ---------------------------------------------------------------------------
@dataclass
class Report:
    seed: int
    faults: Counter[str] = field(default_factory=Counter)
    crashed: list[str] = field(default_factory=list)  # services that died without being killed
    # Services that refused to start while a dependency was away, restarted as a supervisor would.
    supervisor_restarts: Counter[str] = field(default_factory=Counter)
    events_produced: int = 0
    events_accepted: int = 0
    redelivered: int = 0
    bad_sent: int = 0
    bad_generated: int = 0
    lost: Counter[str] = field(default_factory=Counter)
    doubled: Counter[str] = field(default_factory=Counter)
    dead_lettered_once: int = 0
    bad_missing: list[str] = field(default_factory=list)
    bad_twice: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    dead_letter_copies: int = 0  # extra copies of a dead letter on Kafka (the relay's at-least-once)
    stuck: Counter[str] = field(default_factory=Counter)
    invariant_problems: list[str] = field(default_factory=list)
    outage_log_lines: dict[str, int] = field(default_factory=dict)
    gauge_samples: int = 0
    gauge_samples_waiting: int = 0  # samples taken while rows waited in the outbox
    gauge_lies: list[str] = field(default_factory=list)
    emails_sent: int = 0
    emails_incomplete: int = 0  # in the catcher without a Message-ID: cut short by the SMTP outage
    emails_resent: int = 0  # the same Message-ID delivered again (a crash between SMTP and the mark)
    emails_owed: Counter[str] = field(default_factory=Counter)  # (event, recipient) owed, by how
    emails_oracle: int = 0  # (alert, recipient) the oracle owes
    alerts_not_predicted: Counter[str] = field(default_factory=Counter)  # published alerts, by kind
    settled: bool = False
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.settled
            and not self.crashed
            and sum(self.lost.values()) == 0
            and sum(self.doubled.values()) == 0
            and not self.bad_missing
            and not self.bad_twice
            and self.dead_lettered_once == self.bad_sent
            and sum(self.stuck.values()) == 0
            and not self.invariant_problems
            and not self.gauge_lies
            and all(n <= OUTAGE_LOG_LINES_MAX for n in self.outage_log_lines.values())
        )

    def table(self) -> str:
        def counts(c: Counter[str]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if v) or "none"

        kills = Counter({k: v for k, v in self.faults.items() if k.startswith("kill -9 ")})
        others = Counter({k: v for k, v in self.faults.items() if not k.startswith("kill -9 ")})
        rows = [
            ("faults injected", f"{sum(kills.values())} kill -9 ({counts(kills)}); {counts(others)}"),
            ("", f"{self.bad_sent} bad records ({self.bad_generated} generated by hypothesis)"),
            ("crashed by itself", ", ".join(self.crashed) or "none"),
            ("refused to start", f"{counts(self.supervisor_restarts)} (a dependency away; restarted)"),
            (
                "events",
                f"{self.events_produced} partner events produced, {self.events_accepted} accepted once; "
                f"{self.redelivered} harmless redeliveries of the same id",
            ),
            ("lost", f"{sum(self.lost.values())} ({counts(self.lost)})"),
            ("duplicated", f"{sum(self.doubled.values())} ({counts(self.doubled)})"),
            (
                "dead-lettered",
                f"{self.dead_lettered_once} of {self.bad_sent} bad records once, with a reason"
                f"; missing {len(self.bad_missing)}, twice {len(self.bad_twice)}"
                f"; {self.dead_letter_copies} extra copies on Kafka",
            ),
            ("reasons", counts(self.reasons)),
            ("stuck", counts(self.stuck)),
            ("ledger check", "; ".join(self.invariant_problems[:3]) or "ok"),
            (
                "emails",
                f"{self.emails_sent} sent, each Message-ID delivered; "
                f"{self.emails_resent} resent with the same Message-ID; "
                f"{self.emails_incomplete} cut short in the catcher",
            ),
            (
                "emails (event, recipient)",
                f"{sum(self.emails_owed.values())} owed by the alerts published ({counts(self.emails_owed)}); "
                f"lost {self.lost['emails (event, recipient)']}, doubled {self.doubled['emails (event, recipient)']}",
            ),
            (
                "emails vs oracle",
                f"{self.emails_oracle} (alert, recipient) owed by the oracle; lost {self.lost['emails vs oracle']}, "
                f"doubled {self.doubled['emails vs oracle']}; in the catcher by subject: lost "
                f"{self.lost['emails in the catcher vs oracle']}, "
                f"doubled {self.doubled['emails in the catcher vs oracle']}",
            ),
            (
                "not predicted",
                f"alerts the oracle cannot predict, checked against the published events only: "
                f"{counts(self.alerts_not_predicted)} (docs/chaos.md says why)",
            ),
            (
                "Kafka outage",
                "warning/error lines "
                + ", ".join(f"{s} {n}" for s, n in self.outage_log_lines.items())
                + f"; outbox gauge wrong in {len(self.gauge_lies)} of {self.gauge_samples} samples"
                + f" ({self.gauge_samples_waiting} while rows waited)",
            ),
            ("settled", "yes" if self.settled else "NO: work left after the timeout"),
            ("time", f"{self.seconds:.0f} s"),
            ("verdict", "PASS" if self.passed else "FAIL"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"Fault campaign, seed {self.seed}"] + [f"  {k:<{width}}  {v}" for k, v in rows]
        lines += [f"  ! {d}" for d in self.details[:40]]
        return "\n".join(lines)


def _uk_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(ZoneInfo("Europe/London")).date()


def _has_amount(event: Event[Any]) -> bool:
    data = event.to_dict()["data"]
    return any(isinstance(data.get(k), int) for k in ("daily_rate_pence", "amount_pence"))


async def _get(url: str, timeout: float) -> httpx.Response:
    """GET as ops (/metrics is for ops: docs/staff-access.md), with a token the local key signs."""
    async with httpx.AsyncClient(headers=runner.ops_headers()) as client:
        return await client.get(url, timeout=timeout)


# ---- Kafka reading ------------------------------------------------------------------------
async def read_all(settings: KafkaSettings, topic: str) -> list[Any]:
    """Every record of ``topic``, from the beginning to the end offsets of when it was asked."""
    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(settings))
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
            for tp, records in batch.items():
                out.extend(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


# ---- the campaign -------------------------------------------------------------------------
class Campaign:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.say = options.log
        self.rng = random.Random(options.seed)
        self.report = Report(options.seed)
        self.stack = PrivateStack(ports=options.ports or free_ports(), log=lambda m: self.say(f"    {m}"))
        self.work = chaos_root() / f"run-{options.seed}"
        self.paths = runner.RunPaths(self.work)
        self.pids: dict[str, int] = {}
        self.killed: set[int] = set()
        self.sent_bad: list[tuple[BadRecord, str, int]] = []  # record, topic, offset
        self.sent_events: dict[str, list[Event[Any]]] = {}  # partner -> events sent so far
        self._smtp_thread: threading.Thread | None = None

    # ---- the system ---------------------------------------------------------------------
    def _env(self, info: StackInfo, scenario: Scenario) -> dict[str, str]:
        self.ports = {svc: free_port() for svc in runner.SERVICES}
        env = runner.service_env(info.as_env(), self.paths, AS_OF, scheduler_s=3600, ports=self.ports)
        env["HOMEWARD_LOG_FORMAT"] = "json"
        for svc in runner.SERVICES:
            p = f"HOMEWARD_{svc.upper()}_"
            env[p + "DATABASE_URL"] = info.database_url(svc)
            env[p + "OUTBOX_POLL_INTERVAL_S"] = "0.5"
            # A killed service's jobs must not run "as of" the scenario's last day on half of
            # its history when it comes back: they run once the history is in (settle).
            if svc != "notifications":
                env[p + "SCHEDULER_FIRST_RUN_AFTER_S"] = "86400"
        # Emails: retried soon after the SMTP outage; a lease a crash leaves behind runs out soon.
        env["HOMEWARD_NOTIFICATIONS_BACKOFF_BASE_S"] = "2"
        env["HOMEWARD_NOTIFICATIONS_BACKOFF_MAX_S"] = "10"
        env["HOMEWARD_NOTIFICATIONS_SEND_LEASE_S"] = "15"
        env["HOMEWARD_NOTIFICATIONS_MAX_ATTEMPTS"] = "30"
        return env

    def _start(self, svc: str) -> None:
        self.pids[svc] = runner.start_process(
            svc, [sys.executable, "-m", f"homeward.{svc}"], self.env_for[svc], self.paths
        )

    def _alive(self, svc: str) -> bool:
        return runner._alive(self.pids[svc])

    def _check_crashes(self) -> None:
        """Restart a service that exited, as its supervisor would. One that refused to start
        because Kafka or PostgreSQL was away (restarted just before an outage) did what it
        should; any other exit is a crash, and fails the campaign."""
        for svc, pid in list(self.pids.items()):
            if pid not in self.killed and not runner._alive(pid):
                self.killed.add(pid)
                tail = (self.paths.logs / f"{svc}.log").read_text(errors="replace")[-1500:]
                last = tail.strip().splitlines()[-1] if tail.strip() else ""
                if '"event": "cannot start"' in last and ("cannot reach" in last or "Connect" in last):
                    self.report.supervisor_restarts[svc] += 1
                else:
                    self.report.crashed.append(svc)
                    self.report.details.append(f"{svc} exited by itself; its log ends: {tail[-300:]!r}")
                self._start(svc)

    def _kill(self, svc: str) -> None:
        pid = self.pids[svc]
        self.killed.add(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        self.report.faults[f"kill -9 {svc}"] += 1

    # ---- sending --------------------------------------------------------------------------
    async def _send(self, settings: KafkaSettings, chunk: list[Any]) -> None:
        topics = Topics("")
        producer = AIOKafkaProducer(
            acks="all", enable_idempotence=True, max_request_size=1_048_576, **client_options(settings)
        )
        await producer.start()
        try:
            futures: list[tuple[BadRecord | None, str, Any]] = []
            for item in chunk:
                if isinstance(item, BadRecord):
                    topic = topics.partner(item.topic_of)
                    fut = await producer.send(topic, item.value, key=item.key, headers=item.headers)
                    futures.append((item, topic, fut))
                else:
                    partner, event = item
                    key, value, headers = event.to_kafka()
                    fut = await producer.send(topics.partner(partner), value, key=key, headers=list(headers))
                    futures.append((None, topics.partner(partner), fut))
                    self.sent_events.setdefault(partner, []).append(event)
            for record, topic, fut in futures:
                meta = await fut
                if record is not None:
                    self.sent_bad.append((record, topic, meta.offset))
        finally:
            await producer.stop()

    # ---- faults ---------------------------------------------------------------------------
    def _lines(self) -> dict[str, int]:
        """Each service's warning and error lines so far (and any line that is not JSON): what
        an outage floods a log with. INFO lines of work going on (an email sent while Kafka is
        away) are not counted."""
        out = {}
        for svc in runner.SERVICES:
            n = 0
            with contextlib.suppress(OSError), open(self.paths.logs / f"{svc}.log", "rb") as f:
                for line in f:
                    if b'"level": "info"' not in line and b'"level": "debug"' not in line:
                        n += 1
            out[svc] = n
        return out

    async def _gauges_vs_database(self, info: StackInfo, history: dict[str, list[tuple[float, int]]]) -> None:
        """While Kafka is away: each service's homeward_outbox_pending against its outbox. The
        gauge is refreshed every 5 s, so it is wrong only if it reads 0 while rows have waited
        in the outbox for every sample of the last 6 s."""
        for svc in runner.SERVICES:
            try:
                conn = await asyncpg.connect(info.database_url(svc))
                try:
                    before = int(await conn.fetchval(PENDING_SQL))
                    metrics = (await _get(f"http://127.0.0.1:{self.ports[svc]}/metrics", 5)).text
                    after = int(await conn.fetchval(PENDING_SQL))
                finally:
                    await conn.close()
            except Exception:  # a service killed a moment ago, say: no sample
                continue
            now = time.monotonic()
            gauge = next(
                (
                    float(line.rsplit(" ", 1)[1])
                    for line in metrics.splitlines()
                    if line.startswith("homeward_outbox_pending{") and f'service="{svc}"' in line
                ),
                None,
            )
            waiting = min(before, after)
            samples = history.setdefault(svc, [])
            samples.append((now, waiting))
            self.report.gauge_samples += 1
            self.report.gauge_samples_waiting += int(waiting > 0)
            window = [w for t, w in samples if t >= now - 6.0]
            waited_long = any(t <= now - 6.0 for t, _ in samples) and all(w > 0 for w in window)
            if gauge is None or (waited_long and gauge == 0):
                self.report.gauge_lies.append(f"{svc}: gauge {gauge} with {before}..{after} rows pending")
                self.report.details.append(self.report.gauge_lies[-1])

    def _sample_gauges(self, info: StackInfo, done: threading.Event) -> None:
        async def loop() -> None:
            history: dict[str, list[tuple[float, int]]] = {}
            while not done.is_set():
                await self._gauges_vs_database(info, history)
                await asyncio.sleep(2)

        asyncio.run(loop())

    def _fault(self, action: tuple[str, ...], info: StackInfo) -> None:
        kind = action[0]
        if kind == "kill":
            svc = action[1]
            time.sleep(self.rng.uniform(0.0, 1.5))
            self._kill(svc)
            time.sleep(self.rng.uniform(0.2, 3.0))
            self._start(svc)
        elif kind == "kafka":
            lines = self._lines()
            self.say("  fault: Kafka restarts")
            done = threading.Event()
            sampler = threading.Thread(target=self._sample_gauges, args=(info, done), name="gauges")
            self.stack.stop_kafka()
            sampler.start()
            time.sleep(self.o.kafka_down_s)
            self.stack.start_kafka()
            done.set()
            sampler.join()
            time.sleep(5)
            after = self._lines()
            self.report.outage_log_lines = {s: after[s] - lines[s] for s in runner.SERVICES}
            self.report.faults["Kafka restarted"] += 1
        elif kind == "postgres":
            self.say("  fault: PostgreSQL restarts")
            self.stack.stop_postgres()
            time.sleep(self.o.postgres_down_s)
            self.stack.start_postgres()
            self.report.faults["PostgreSQL restarted"] += 1
        elif kind == "smtp":
            self.say(f"  fault: SMTP stops for {self.o.smtp_outage_s:.0f} s")
            self.stack.stop_smtp()

            def back() -> None:
                time.sleep(self.o.smtp_outage_s)
                self.stack.start_smtp()

            self._smtp_thread = threading.Thread(target=back, name="smtp-back", daemon=True)
            self._smtp_thread.start()
            self.report.faults[f"SMTP stopped {self.o.smtp_outage_s:.0f} s"] += 1

    # ---- the run ----------------------------------------------------------------------------
    def run(self) -> Report:
        started = time.monotonic()
        self.say(f"chaos: generating a scenario of about {self.o.events} partner events (seed {self.o.seed})")
        scenario = scenario_for(self.o.events, self.o.seed)
        self.say(f"chaos: {len(scenario.events)} events; starting the private stack under {self.stack.root}")
        shutil.rmtree(self.work, ignore_errors=True)  # the logs of an earlier run of this seed
        info = self.stack.up()
        try:
            self._play(scenario, info)
        finally:
            with contextlib.suppress(Exception):
                runner.stop_services(self.work, timeout=20)
            if self._smtp_thread is not None:
                self._smtp_thread.join(timeout=self.o.smtp_outage_s + 30)
            self.stack.down(wipe=not self.o.keep)
            self.report.seconds = time.monotonic() - started
        return self.report

    def _play(self, scenario: Scenario, info: StackInfo) -> None:
        admin = info.kafka_settings()
        asyncio.run(ensure_topics(admin, Topics("").declared(tuple(scenario.partners))))
        self.paths.run.mkdir(parents=True, exist_ok=True)
        (self.paths.run / "reference.yaml").write_text(yaml.safe_dump(scenario.reference, sort_keys=False))
        (self.paths.run / "recipients.yaml").write_text(yaml.safe_dump(runner.recipients_for(scenario)))
        env = self._env(info, scenario)
        self.env_for = {svc: {**env, **info.kafka_env(service_principal(svc))} for svc in runner.SERVICES}
        for svc in runner.SERVICES:
            self._start(svc)
        runner.wait_ready(self.paths, timeout=300, ports=self.ports)
        recipients = str(self.paths.run / "recipients.yaml")
        subprocess.run(
            [sys.executable, "-m", "homeward.notifications", "recipients", "import", recipients],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )

        # The bad records, and the faults in a seeded order.
        sender, template = next(
            (p, e) for p, e in scenario.events if isinstance(e.data, PlacementMade) and p == e.data.commissioner
        )
        other = next(p for p in scenario.partners if p != sender)
        tag = f"s{self.o.seed}"
        made = cast(Event[PlacementMade], template)
        bad = hand_written(made, sender, other, tag)
        gen = generated(made, sender, self.o.generated_bad, self.o.seed, tag)
        self.report.bad_generated = len(gen)
        actions: list[tuple[str, ...]] = [
            ("kill", svc) for svc in runner.SERVICES for _ in range(self.o.kills_per_service)
        ]
        actions += [("kafka",), ("postgres",), ("smtp",)]
        self.rng.shuffle(actions)
        n = len(actions) + 1
        events = list(scenario.events)
        chunks = [events[i * len(events) // n : (i + 1) * len(events) // n] for i in range(n)]
        dup_at = set(self.rng.sample(range(1, n), min(self.o.duplicates, n - 1)))

        def late(i: int) -> list[BadRecord]:
            if i not in dup_at or not self.sent_events.get(sender):
                return []
            # An event whose content can change in a way the contracts keep (an amount or rate):
            # an unknown field in the data is dropped by the contracts, so the copy would be the same event.
            candidates = [e for e in self.sent_events[sender] if _has_amount(e)]
            return [conflicting_duplicate(self.rng.choice(candidates), sender)] if candidates else []

        plan = interleave(self.rng, chunks, [*bad, *gen])
        for i, chunk in enumerate(plan):
            chunk = list(chunk)
            for record in late(i):
                chunk.append(record)
            self.say(f"  chunk {i + 1}/{len(plan)}: {len(chunk)} records")
            asyncio.run(self._send(admin, chunk))
            if i < len(actions):
                if actions[i][0] != "kafka":  # Kafka stops while the chunk is at work: rows wait in outboxes
                    time.sleep(self.rng.uniform(*self.o.gap_s))
                self._check_crashes()
                self._fault(actions[i], info)
        self.report.events_produced = len(events)
        self.report.bad_sent = len(self.sent_bad)

        # Everything back, then let the work finish and the jobs run.
        if self._smtp_thread is not None:
            self._smtp_thread.join()
        self._check_crashes()
        runner.wait_ready(self.paths, timeout=300, ports=self.ports)
        self.say("chaos: faults done; waiting for the services to finish the work")
        # At national size the services are far behind when the faults end (half an hour of
        # work): the jobs must not run "as of" the last day before the history is in, and
        # settle's own wait (10 minutes) is for the little work the jobs cause.
        drained = runner.wait_settled(admin, timeout=self.o.settle_timeout_s)
        self.say("chaos: the history is in; running the jobs")
        self.report.settled = runner.settle(admin, self.ports, rounds=2) and drained
        self.report.settled = asyncio.run(self._wait_drained(info)) and self.report.settled
        self._check_crashes()
        self.say("chaos: comparing with the oracle")
        asyncio.run(self._compare(scenario, info, admin))

    async def _wait_drained(self, info: StackInfo) -> bool:
        """Every outbox published and no email waiting, twice in a row."""
        deadline = time.monotonic() + self.o.settle_timeout_s
        quiet = 0
        while time.monotonic() < deadline:
            total = 0
            for svc in runner.SERVICES:
                conn = await asyncpg.connect(info.database_url(svc))
                try:
                    total += int(await conn.fetchval(PENDING_SQL))
                    if svc == "notifications":
                        total += int(await conn.fetchval("SELECT count(*) FROM emails WHERE status = 'pending'"))
                finally:
                    await conn.close()
            quiet = quiet + 1 if total == 0 else 0
            if quiet >= 2:
                return True
            await asyncio.sleep(2)
        return False

    # ---- the comparison ----------------------------------------------------------------
    async def _compare(self, scenario: Scenario, info: StackInfo, admin: KafkaSettings) -> None:
        from tests.e2e import oracle

        r = self.report
        world = oracle.replay(scenario)
        topics = Topics("")

        # Every partner event accepted by the ingress once (by source and id); nothing else.
        accepted: Counter[tuple[str, str]] = Counter()
        for rec in await read_all(admin, topics.internal("ingress")):
            e = parse_kafka(rec.value, rec.headers)
            accepted[(e.source, e.id)] += 1
        expected = {(e.source, e.id) for _, e in scenario.events}
        r.events_accepted = len(expected & set(accepted))
        r.redelivered = sum(n - 1 for n in accepted.values())
        r.lost["partner events"] = len(expected - set(accepted))
        r.lost["bad records accepted"] = len(set(accepted) - expected)
        for key in sorted(set(accepted) - expected)[:5]:
            r.details.append(f"accepted though not in the scenario: {key}")

        published: dict[str, list[Event[Any]]] = {}
        for svc in ("referrals", "placements", "budget"):
            by_id: dict[str, Event[Any]] = {}
            for rec in await read_all(admin, topics.internal(svc)):
                e = parse_kafka(rec.value, rec.headers)
                by_id.setdefault(e.id, e)  # the same event published twice (a crash before the mark) is one
            published[svc] = list(by_id.values())

        await self._compare_dead_letters(info, admin)
        await self._compare_register(world, info, oracle)
        self._compare_placements_events(world, published["placements"], oracle)
        await self._compare_ledger(scenario, world, info, oracle)
        await self._compare_emails(scenario, world, info, published, oracle)
        await self._stuck(info)

    async def _compare_dead_letters(self, info: StackInfo, admin: KafkaSettings) -> None:
        r = self.report
        topics = Topics("")
        wanted = {(topic, offset): record for record, topic, offset in self.sent_bad}
        conn = await asyncpg.connect(info.database_url("ingress"))
        try:
            rows = await conn.fetch("SELECT headers, published_at FROM outbox WHERE topic = $1", topics.dlq("ingress"))
        finally:
            await conn.close()
        decided: Counter[tuple[str, int]] = Counter()
        for row in rows:
            h = dict(decode_headers(row["headers"]))
            origin = (h.get(DLQ_TOPIC, b"").decode(), int(h.get(DLQ_OFFSET, b"-1").decode() or -1))
            decided[origin] += 1
            reason = h.get(DLQ_REASON, b"").decode()
            if origin in wanted:
                r.reasons[reason or "(no reason)"] += 1
                if not reason:
                    r.details.append(f"dead letter without a reason: {wanted[origin].label}")
            else:
                r.lost["good records dead-lettered"] += 1
                r.details.append(f"dead-lettered though good: {origin} ({reason})")
        for origin, record in wanted.items():
            n = decided.get(origin, 0)
            if n == 0:
                r.bad_missing.append(record.label)
                r.details.append(f"bad record not dead-lettered: {record.label} at {origin}")
            elif n > 1:
                r.bad_twice.append(record.label)
                r.details.append(f"bad record dead-lettered {n} times: {record.label}")
            else:
                r.dead_lettered_once += 1
        on_kafka: Counter[tuple[str, int]] = Counter()
        for rec in await read_all(admin, topics.dlq("ingress")):
            h = dict(rec.headers)
            on_kafka[(h.get(DLQ_TOPIC, b"").decode(), int(h.get(DLQ_OFFSET, b"-1").decode() or -1))] += 1
        r.dead_letter_copies = sum(n - 1 for n in on_kafka.values() if n > 1)
        missing_on_kafka = [o for o in decided if o not in on_kafka]
        r.stuck["dead letters not on Kafka"] = len(missing_on_kafka)
        for svc in ("referrals", "placements", "budget", "notifications"):
            others = await read_all(admin, topics.dlq(svc))
            if others:
                r.lost[f"dead-lettered by {svc}"] += len(others)
                reasons = Counter(dict(x.headers).get(DLQ_REASON, b"").decode() for x in others)
                r.details.append(f"{svc} dead-lettered {len(others)} records: {dict(reasons)}")

    async def _compare_register(self, world: Any, info: StackInfo, oracle: Any) -> None:
        from homeward.placements.adapters.read_model import ReadModel

        pool = await asyncpg.create_pool(info.database_url("placements"), min_size=1, max_size=2)
        try:
            got = {p.placement_id: p.out_of_area for p in await ReadModel(pool).active(AS_OF)}
        finally:
            await pool.close()
        want = oracle.active(world, AS_OF)
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        wrong = [k for k in want if k in got and got[k] != want[k]]
        self.report.lost["register"] = len(missing) + len(wrong)
        self.report.doubled["register (extra)"] = len(extra)
        for k in (missing + wrong + extra)[:5]:
            self.report.details.append(f"register differs for {k}: service {got.get(k)}, oracle {want.get(k)}")

    def _compare_placements_events(self, world: Any, published: list[Event[Any]], oracle: Any) -> None:
        r = self.report
        overdue = Counter(
            (e.data.placement_id, e.data.review_type.value) for e in published if e.type.endswith("ReviewOverdue.v1")
        )
        want_overdue = oracle.chased(world, AS_OF)  # open placements only: a discharged person is not chased
        r.lost["ReviewOverdue"] = len(set(want_overdue) - set(overdue))
        r.doubled["ReviewOverdue"] = sum(n - 1 for n in overdue.values()) + len(set(overdue) - set(want_overdue))
        moves = Counter(
            (e.data.from_placement_id, e.data.to_placement_id)
            for e in published
            if e.type.endswith("PatientRepatriated.v1")
        )
        want_moves = oracle.repatriations(world)
        r.lost["PatientRepatriated"] = len(want_moves - set(moves))
        r.doubled["PatientRepatriated"] = sum(n - 1 for n in moves.values()) + len(set(moves) - want_moves)
        for k in sorted(set(want_overdue) ^ set(overdue))[:5]:
            r.details.append(
                f"ReviewOverdue differs: {k}: service {overdue.get(k, 0)}, oracle {int(k in want_overdue)}"
            )
        for k in sorted(want_moves ^ set(moves))[:5]:
            r.details.append(f"PatientRepatriated differs: {k}")

    async def _compare_ledger(self, scenario: Scenario, world: Any, info: StackInfo, oracle: Any) -> None:
        from homeward.budget.adapters import postgres as q
        from homeward.budget.domain.position import position

        r = self.report
        spent = oracle.spent(world, FY_START, AS_OF)
        conn = await asyncpg.connect(info.database_url("budget"))
        try:
            for c in scenario.reference["commissioners"]:
                code = c["code"]
                pos = position(await q.balances_as_of(conn, AS_OF, code), code, FY).to_json()
                want = (world.allocations.get((code, FY), 0), spent.get(code, 0))
                got = (pos["allocated_pence"], pos["spent_pence"])
                if got != want:
                    r.lost["ledger (commissioners off)"] += 1
                    r.details.append(f"ledger of {code}: allocated, spent {got} against the oracle's {want}")
            report = await q.check(conn)
        finally:
            await conn.close()
        r.invariant_problems = list(report.problems)

    async def _mail_by_recipient(self, addresses: list[str]) -> tuple[dict[str, list[dict[str, Any]]], int]:
        """The catcher's messages per staff address, and how many it holds to nobody of them.
        Read per recipient: at national size the whole list (about 6 kB a message) is too large
        for one answer of MailDev's."""
        url = self.stack.info().mail_api_url
        out: dict[str, list[dict[str, Any]]] = {}
        async with httpx.AsyncClient(timeout=300) as client:
            for address in addresses:
                r = await client.get(url, params={"to.address": address})
                r.raise_for_status()
                out[address] = r.json()
            # Each message goes to one address, so the catcher holds no more than those found;
            # anything past them is to somebody else (or has no readable To).
            found = sum(len(v) for v in out.values())
            r = await client.get(url, params={"skip": str(found)})
            r.raise_for_status()
            rest = len(r.json())
        return out, rest

    async def _compare_emails(
        self, scenario: Scenario, world: Any, info: StackInfo, published: dict[str, list[Event[Any]]], oracle: Any
    ) -> None:
        """Emails per (event, recipient), by Message-ID: against the alerts the services
        published (every kind), and against the oracle (the kinds it predicts from the partner
        events alone; docs/chaos.md says which it cannot predict under faults, and why)."""
        conn = await asyncpg.connect(info.database_url("notifications"))
        try:
            emails = await conn.fetch("SELECT message_id, status, kind, to_address FROM emails")
            rows = await conn.fetch(
                """SELECT n.cause_event_id, n.event_name, n.email_address, n.reference, n.subject, n.digest,
                          n.status, e.message_id, e.kind AS email_kind
                   FROM notifications n LEFT JOIN emails e ON e.id = n.email_id"""
            )
            routes = {
                (row["event_type"], row["role"]): (row["min_escalation_level"], row["max_escalation_level"])
                for row in await conn.fetch("SELECT * FROM default_routes")
            }
        finally:
            await conn.close()

        staff = runner.recipients_for(scenario)
        by_address, elsewhere = await self._mail_by_recipient([s["email"] for s in staff])
        # What the oracle owes, from the partner events alone; the day each provider's report was
        # judged (awaiting agreement) and each invoice held comes from the events published.
        awaiting = {
            e.data.placement_id: _uk_day(e.time)
            for e in published["placements"]
            if e.type == "homeward.PlacementAwaitingAgreement.v1"
        }
        held = {
            e.data.invoice_id: _uk_day(e.time)
            for e in published["budget"]
            if e.type == "homeward.AmountHeld.v1" and e.data.invoice_id
        }
        owed = oracle.alerts(world, AS_OF, awaiting, held)

        email_findings(
            self.report,
            staff=staff,
            routes=routes,
            published=published,
            emails=emails,
            rows=rows,
            by_address=by_address,
            elsewhere=elsewhere,
            owed=owed,
            timeliness=oracle.timeliness,
        )

    async def _stuck(self, info: StackInfo) -> None:
        r = self.report
        r.stuck["consumer lag"] = await runner.consumer_lag(info.kafka_settings())
        for svc in runner.SERVICES:
            conn = await asyncpg.connect(info.database_url(svc))
            try:
                r.stuck[f"{svc} outbox pending"] = int(await conn.fetchval(PENDING_SQL))
                r.stuck[f"{svc} outbox parked"] = int(
                    await conn.fetchval("SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL")
                )
            finally:
                await conn.close()
            base = f"http://127.0.0.1:{self.ports[svc]}"
            try:
                ready = (await _get(base + "/readyz", 10)).status_code == 200
                metrics = (await _get(base + "/metrics", 10)).text
            except httpx.HTTPError:
                ready, metrics = False, ""
            r.stuck[f"{svc} not ready"] = int(not ready)
            r.stuck[f"{svc} stalled"] = sum(
                1 for line in metrics.splitlines() if line.startswith("homeward_stalled{") and not line.endswith(" 0.0")
            )


def email_findings(
    r: Report,
    *,
    staff: list[dict[str, Any]],
    routes: dict[tuple[str, str], tuple[int, int | None]],
    published: dict[str, list[Event[Any]]],
    emails: list[Any],
    rows: list[Any],
    by_address: dict[str, list[dict[str, Any]]],
    elsewhere: int,
    owed: list[Any],
    timeliness: Callable[[dt.date, dt.date], str],
) -> None:
    """Emails per (event, recipient), by Message-ID, into the report (docs/chaos.md): what
    notifications recorded (``emails``; ``rows``, its notifications joined to their emails), what
    the catcher holds (``by_address``, and ``elsewhere`` messages to nobody on the staff),
    against the alerts the services published (``published``, routed to ``staff`` by
    ``routes``) and the alerts the oracle owes (``owed``, ``oracle.Alert``)."""
    from homeward.notifications.domain.alerts import alert_from

    # What the services' own records say: every email sent, and the catcher holds each, once.
    status = Counter(row["status"] for row in emails)
    sent = {row["message_id"].strip("<>") for row in emails if row["status"] == "sent"}
    r.emails_sent = len(sent)
    r.lost["emails failed or pending"] = status.get("failed", 0) + status.get("pending", 0)
    # (Message-ID, address) -> the text delivered; a message without a Message-ID is a delivery
    # cut short by the SMTP outage (MailDev stopped mid-transfer): the sender tries it again.
    delivered: Counter[tuple[str, str]] = Counter()
    texts: dict[str, str] = {}  # digests' text, by Message-ID
    catcher_subjects: dict[str, tuple[str, str]] = {}  # Message-ID -> (address, subject)
    for address, messages in by_address.items():
        for m in messages:
            if not m.get("messageId"):
                r.emails_incomplete += 1
                continue
            mid = str(m["messageId"]).strip("<>")
            delivered[(mid, address)] += 1
            subject = str(m.get("subject") or "")
            catcher_subjects[mid] = (address, subject)
            if "in your Homeward digest for" in subject:
                texts[mid] = str(m.get("text") or "")
            if mid not in sent:
                r.details.append(f"email not sent by notifications: {mid!r} to {address}: {m.get('subject')!r}")
    delivered_ids = {mid for mid, _ in delivered}
    r.lost["emails not delivered"] = len(sent - delivered_ids)
    r.doubled["emails unknown to notifications"] = len(delivered_ids - sent) + elsewhere
    if elsewhere:
        r.details.append(f"{elsewhere} messages in the catcher to no member of staff")
    r.emails_resent = sum(n - 1 for n in delivered.values() if n > 1)
    digests = Counter(
        row["to_address"] for row in emails if row["kind"] == "digest" and row["message_id"].strip("<>") in sent
    )
    r.doubled["digests (more than one a recipient)"] = sum(n - 1 for n in digests.values())

    # Per (event, recipient): each alert-worthy event the services published reaches each of
    # its recipients once, by email, in the digest or recorded as suppressed (history).
    expected: dict[tuple[str, str], tuple[str, str]] = {}  # (event id, address) -> (alert, how)
    staff_of: dict[str, list[dict[str, Any]]] = {}
    for person in staff:
        staff_of.setdefault(person["org"], []).append(person)
    for events in published.values():
        for event in events:
            alert = alert_from(event)
            if alert is None:
                continue
            how = HOW[timeliness(alert.due_by, AS_OF)]
            if ORACLE_ALERTS.get(alert.name, "\0") not in alert.subject:
                r.alerts_not_predicted[alert.name] += 1
            for person in (p for org in alert.organisations for p in staff_of.get(org, [])):
                bounds = routes.get((alert.name, person["role"]))
                if bounds is None:
                    continue
                low, high = bounds
                if low <= alert.escalation_level and (high is None or alert.escalation_level <= high):
                    expected[(event.id, person["email"])] = (alert.name, how)
    got: dict[tuple[str, str], tuple[str, str]] = {}  # delivered (or suppressed) as it should be
    recorded: set[tuple[str, str]] = set()
    reached: Counter[tuple[str, str, str, str]] = Counter()  # (address, keyword, reference, how)
    for row in rows:
        key = (row["cause_event_id"], row["email_address"])
        recorded.add(key)
        how = "suppressed" if row["status"] == "suppressed" else "digest" if row["digest"] else "email"
        mid = (row["message_id"] or "").strip("<>")
        if how == "suppressed":
            ok = not mid
        else:
            ok = row["status"] == "sent" and (mid, row["email_address"]) in delivered
            if how == "digest":
                ok = ok and row["email_kind"] == "digest" and row["reference"] in texts.get(mid, "")
        if ok:
            got[key] = (row["event_name"], how)
            keyword = ORACLE_ALERTS.get(row["event_name"])
            if keyword and keyword in row["subject"]:
                reached[(row["email_address"], keyword, row["reference"], how)] += 1
    r.emails_owed = Counter(how for _, how in expected.values())
    lost = [k for k in expected if got.get(k) != expected[k]]
    extra = [k for k in recorded if k not in expected]
    r.lost["emails (event, recipient)"] = len(lost)
    r.doubled["emails (event, recipient)"] = len(extra)
    for k in lost[:5]:
        r.details.append(f"email owed but not delivered as {expected[k][1]}: {expected[k][0]} {k}: got {got.get(k)}")
    for k in extra[:5]:
        r.details.append(f"email recorded but not owed: {got.get(k, 'not delivered')} {k}")

    # Against the oracle: the kinds it predicts, delivered as it says (email, digest, suppressed).
    def mailbox(a: Any) -> str:
        return f"{a.role.replace('_', '.')}@{a.org.lower()}.nhs.invalid"

    want = Counter((mailbox(a), a.keyword, a.logged_as or a.reference, HOW[timeliness(a.due_by, AS_OF)]) for a in owed)
    r.emails_oracle = len(owed)
    r.lost["emails vs oracle"] = sum((want - reached).values())
    r.doubled["emails vs oracle"] = sum((reached - want).values())
    for diff in sorted((want - reached) + (reached - want))[:5]:
        r.details.append(
            f"email differs from the oracle: {diff}: delivered {reached.get(diff, 0)}, owed {want.get(diff, 0)}"
        )
    # And the catcher alone, not notifications' log: the alerts emailed on their own, by the
    # words and placement in each subject, against the oracle's current alerts.
    want_own = Counter((mailbox(a), a.keyword, a.reference) for a in owed if timeliness(a.due_by, AS_OF) == "current")
    seen_own: Counter[tuple[str, str, str]] = Counter()
    for to, subject in catcher_subjects.values():
        if "in your Homeward digest for" in subject:
            continue
        placement = re.search(r"placement (\S+)", subject)
        for keyword in ORACLE_ALERTS.values():
            if keyword in subject:
                seen_own[(to, keyword, placement.group(1) if placement else "?")] += 1
    r.lost["emails in the catcher vs oracle"] = sum((want_own - seen_own).values())
    r.doubled["emails in the catcher vs oracle"] = sum((seen_own - want_own).values())
    for own in sorted((want_own - seen_own) + (seen_own - want_own))[:5]:
        r.details.append(
            f"the catcher differs from the oracle: {own}: {seen_own.get(own, 0)}, owed {want_own.get(own, 0)}"
        )


def run(options: Options) -> Report:
    return Campaign(options).run()
