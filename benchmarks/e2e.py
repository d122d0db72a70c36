"""End-to-end benchmark: the national scenario through the whole system, against two
baselines measured in the same run, plus a steady-rate latency run.

``e2e``: generate the scenario; start every service the main job starts, in a namespace and
databases of their own (:mod:`benchmarks.system`); produce the scenario onto the partner
topics; wait until every consumer group has read everything (zero lag) and every service's
outbox is published. Then:

* partner events/s end to end: the scenario's events over the time from the first send to
  the moment the system was quiet;
* per service: messages consumed and published, messages/s, CPU seconds (``/proc/<pid>/stat``)
  and peak memory (``VmHWM``);
* latency from a partner event's produce time (its Kafka record timestamp) to its first
  effect, p50 and p99: a budget ledger transfer (``transfers.created_at``), a placement on
  the register (``placements.recorded_at``), an email accepted by the SMTP server (the sink's
  clock), and each service's inbox (``inbox.received_at``: the event consumed). The database
  timestamps are PostgreSQL's ``now()``: the start of the batch's transaction, earlier than
  its commit by up to the batch's duration. Effects of internal events are traced back to
  the partner event through the ``correlationid`` of the services' outbox rows;
* baselines: (a) a raw aiokafka consumer copying the same partner messages into a scratch
  table with asyncpg COPY, one row per message, no parsing, no handlers; (b) the producer
  alone: the same events again onto the same partner topics once the services have stopped
  (existing topics: fresh ones would measure the broker creating partitions). Ratios against
  both are printed.

``steady``: a fresh system, partner events produced at a steady rate (200/s for 30 s by
default) by a partner-like producer (``linger_ms=5``), and the latency from each event to
its first ledger transfer, both as PostgreSQL stamped it and as a poller (every 20 ms) first
saw it committed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from homeward.devstack import StackInfo, ensure_up
from homeward.kit.kafka import ensure_topics, make_producer
from homeward.kit.settings import KafkaSettings
from homeward.kit.topics import Topics
from homeward.testing import create_databases, drop_databases

from homeward.cli.lag import LagReader, PartitionLag
from homeward.scenario import ScenarioConfig, generate
from homeward.scenario.produce import Produced, produce, wait_for_leaders

from . import procstat
from .smtp_sink import SmtpSink
from .system import BenchSystem, bench_root, delete_namespace_topics

NATIONAL = {"commissioners": 42, "providers": 300}
SIZES = {"national": 20_000, "1m": 175_000}  # placements: about 114,000 and 1,000,000 partner events

TARGET_EVENTS_PER_S = 2000
TARGET_SHARE_OF_RAW = 0.25
TARGET_STEADY_P99_MS = 500
TARGET_RSS_MIB = 200


def national(placements: int, seed: int = 42) -> ScenarioConfig:
    return ScenarioConfig(
        seed=seed,
        commissioners=NATIONAL["commissioners"],
        distant_providers=NATIONAL["providers"],
        placements=placements,
    )


# ---- small statistics --------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class Latency:
    """Latencies in milliseconds from partner events to one kind of effect."""

    effect: str
    values: list[float] = field(default_factory=list)
    note: str = ""
    of: int = 0  # how many partner events could have had the effect (produced)

    def summary(self) -> dict[str, Any]:
        v = self.values
        return {
            "effect": self.effect,
            "events": len(v),
            "p50_ms": round(percentile(v, 50), 1) if v else None,
            "p99_ms": round(percentile(v, 99), 1) if v else None,
            "max_ms": round(max(v), 1) if v else None,
            "note": self.note,
        }


def _epoch(value: dt.datetime) -> float:
    return value.timestamp()


# ---- tracing effects back to partner events ----------------------------------------------
async def correlation_map(system: BenchSystem) -> dict[str, str]:
    """Internal event id -> the partner event that started its chain (``correlationid``),
    from every service's outbox rows on its own topic."""
    out: dict[str, str] = {}
    for svc in system.services:
        rows = await system.query(
            svc,
            """SELECT convert_from(value, 'UTF8')::jsonb ->> 'id' AS id,
                      convert_from(value, 'UTF8')::jsonb ->> 'correlationid' AS corr
                 FROM outbox WHERE topic = $1""",
            system.topics.internal(svc),
        )
        for r in rows:
            if r["id"] and r["corr"]:
                out.setdefault(r["id"], r["corr"])
    return out


class Tracer:
    def __init__(self, produced_at: dict[str, float], correlations: dict[str, str]) -> None:
        self.produced_at = produced_at
        self.correlations = correlations

    def root(self, event_id: str | None) -> str | None:
        if event_id is None:
            return None
        if event_id in self.produced_at:
            return event_id
        corr = self.correlations.get(event_id)
        return corr if corr in self.produced_at else None

    def latency(self, effect: str, rows: Iterable[tuple[str | None, float]], note: str = "") -> Latency:
        """``rows``: (event id the effect names, when it happened); the first effect of each
        partner event counts."""
        first: dict[str, float] = {}
        for event_id, at in rows:
            partner = self.root(event_id)
            if partner is not None and (partner not in first or at < first[partner]):
                first[partner] = at
        return Latency(
            effect,
            [(at - self.produced_at[p]) * 1000 for p, at in first.items()],
            note,
            len(self.produced_at),
        )


async def _measure(effect: str, fetch: Callable[[], Any], tracer: Tracer, note: str = "") -> Latency:
    try:
        rows = await fetch()
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError, asyncpg.InvalidCatalogNameError) as exc:
        return Latency(effect, note=f"not measured: {exc}")
    return tracer.latency(effect, rows, note)


async def effect_latencies(system: BenchSystem, tracer: Tracer) -> list[Latency]:
    """Partner event -> each effect that a table (or the SMTP sink) timestamps."""
    out: list[Latency] = []
    services = set(system.services)
    if "budget" in services:

        async def ledger() -> list[tuple[str, float]]:
            rows = await system.query("budget", "SELECT cause, min(created_at) AS at FROM transfers GROUP BY cause")
            return [(r["cause"], _epoch(r["at"])) for r in rows]

        out.append(await _measure("budget ledger transfer", ledger, tracer, "transfers.created_at (tx start)"))
    if "placements" in services:

        async def register() -> list[tuple[str, float]]:
            rows = await system.query("placements", "SELECT registered_event_id AS id, recorded_at FROM placements")
            return [(r["id"], _epoch(r["recorded_at"])) for r in rows]

        out.append(await _measure("placement on the register", register, tracer, "placements.recorded_at (tx start)"))
    if "notifications" in services:

        async def emails() -> list[tuple[str | None, float]]:
            rows = await system.query(
                "notifications",
                "SELECT message_id, correlation_id, cause_event_id FROM notifications WHERE message_id IS NOT NULL",
            )
            got = []
            for r in rows:
                at = system.sink.accepted.get(r["message_id"])
                if at is not None:
                    got.append((r["correlation_id"] if tracer.root(r["correlation_id"]) else r["cause_event_id"], at))
            return got

        out.append(await _measure("email accepted by SMTP", emails, tracer, "the SMTP sink's clock"))
    for svc in system.services:

        async def inbox(svc: str = svc) -> list[tuple[str, float]]:
            rows = await system.query(svc, "SELECT event_id, received_at FROM inbox")
            return [(r["event_id"], _epoch(r["received_at"])) for r in rows]

        out.append(await _measure(f"consumed by {svc}", inbox, tracer, "inbox.received_at (tx start)"))
    return out


# ---- waiting for the system to be quiet --------------------------------------------------
@dataclass
class Quiet:
    drained_at: float  # zero lag and empty outboxes (epoch seconds)
    mailed_at: float | None  # and no email waiting to be sent
    lag_rows: list[PartitionLag]
    polls: int


async def _pending_sql(conn: asyncpg.Connection) -> str:  # type: ignore[type-arg]
    """Rows the relay has still to publish (a kit that parks rows Kafka refused does not
    count those)."""
    parked = await conn.fetchval(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'outbox' AND column_name = 'parked_at'"
    )
    return "SELECT count(*) FROM outbox WHERE published_at IS NULL" + (" AND parked_at IS NULL" if parked else "")


async def _pending(conns: dict[str, asyncpg.Connection], sql: dict[str, str]) -> tuple[int, int]:  # type: ignore[type-arg]
    outbox = 0
    for svc, conn in conns.items():
        outbox += int(await conn.fetchval(sql[svc]))
    emails = 0
    if "notifications" in conns:
        emails = int(await conns["notifications"].fetchval("SELECT count(*) FROM emails WHERE status = 'pending'"))
    return outbox, emails


async def wait_quiet(
    system: BenchSystem,
    *,
    timeout: float,
    mail_timeout: float = 300.0,
    say: Callable[[str], None] = print,
    on_drained: Callable[[], Any] | None = None,
) -> Quiet:
    """Poll until every consumer group has zero lag and every outbox is published (twice in a
    row, to be sure nothing was in flight between the two checks: the work is drained at the
    first of the two), then until no email waits to be sent either (sending one publishes a
    NotificationSent, so the outbox may stir again meanwhile). Raises TimeoutError if the work
    is not drained within ``timeout``. ``on_drained()`` is called once, when it is."""
    reader = await LagReader(system.settings, group_prefix=system.group_prefix).start()
    conns = {svc: await asyncpg.connect(system.dsns[svc]) for svc in system.services}
    sql = {svc: await _pending_sql(conn) for svc, conn in conns.items()}
    try:
        deadline = time.monotonic() + timeout
        candidate: float | None = None
        drained_at: float | None = None
        polls = 0
        last_say = 0.0
        rows: list[PartitionLag] = []
        while True:
            at = time.time()
            outbox, emails = await _pending(conns, sql)
            # The run's topics are all created before it starts: no need to look for new ones.
            rows = await reader.read(refresh=polls == 0)
            lag = sum(r.lag for r in rows)
            outbox_after, emails_after = await _pending(conns, sql)
            polls += 1
            quiet = lag == 0 and outbox == outbox_after == 0
            if drained_at is None:
                if quiet and candidate is not None:
                    drained_at = candidate
                    if on_drained is not None:
                        on_drained()
                candidate = (candidate or at) if quiet else None
            if drained_at is not None and quiet and emails == emails_after == 0:
                return Quiet(drained_at, at, rows, polls)
            if time.monotonic() - last_say > 10:
                say(f"    ... lag {lag}, outbox {outbox_after}, emails waiting {emails_after}")
                last_say = time.monotonic()
            if drained_at is None and time.monotonic() > deadline:
                raise TimeoutError(f"not drained after {timeout:.0f}s: lag {lag}, outbox {outbox_after}")
            if drained_at is not None and time.time() - drained_at > mail_timeout:
                return Quiet(drained_at, None, rows, polls)
            # Poll less while much is left: reading the lag of ~1,700 partitions costs 40 to 100 ms
            # of CPU the services could use (this process's CPU is reported, for that reason).
            await asyncio.sleep(2.0 if lag > 500 else 1.0 if lag or drained_at is not None else 0.5)
    finally:
        for conn in conns.values():
            await conn.close()
        await reader.stop()


# ---- the baselines -----------------------------------------------------------------------
async def raw_copy_baseline(info: StackInfo, topics: list[str], label: str) -> tuple[int, float]:
    """Read every message of ``topics`` with a plain aiokafka consumer and COPY each into a
    scratch table (one row per message). Returns (messages, seconds)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    name = f"bench_{label}_raw"
    await create_databases(info.postgres_admin_dsn, [name])
    dsn = info.postgres_admin_dsn.rpartition("/")[0] + "/" + name
    conn = await asyncpg.connect(dsn)
    from homeward.kit.kafka import client_options

    consumer = AIOKafkaConsumer(
        group_id=None, enable_auto_commit=False, fetch_max_bytes=52428800, **client_options(info.kafka_settings())
    )
    try:
        await conn.execute(
            'CREATE TABLE raw (topic text, partition int, "offset" bigint, key bytea, value bytea, ts bigint)'
        )
        await consumer.start()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        copied = 0
        start = time.perf_counter()
        while copied < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            rows = [
                (r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
                for records in batch.values()
                for r in records
            ]
            if rows:
                await conn.copy_records_to_table(
                    "raw", records=rows, columns=["topic", "partition", "offset", "key", "value", "ts"]
                )
                copied += len(rows)
        return copied, time.perf_counter() - start
    finally:
        await consumer.stop()
        await conn.close()
        await drop_databases(info.postgres_admin_dsn, [name])


# ---- reporting ---------------------------------------------------------------------------
def _row(label: str, value: str, extra: str = "") -> str:
    return f"  {label:<44}{value:>16}   {extra}".rstrip()


def _check(ok: bool) -> str:
    return "meets target" if ok else "BELOW TARGET"


def save(result: dict[str, Any], label: str) -> str:
    bench_root().mkdir(parents=True, exist_ok=True)
    path = bench_root() / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return str(path)


def _print_latencies(latencies: list[Latency]) -> None:
    print(f"  {'partner event -> effect':<44}{'events':>8}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}   how")
    for lat in latencies:
        s = lat.summary()
        if not lat.values:
            print(f"  {lat.effect:<44}{0:>8}{'-':>10}{'-':>10}{'-':>10}   {lat.note or 'no such effect'}")
            continue
        print(
            f"  {lat.effect:<44}{s['events']:>8,}{s['p50_ms']:>10,.0f}{s['p99_ms']:>10,.0f}"
            f"{s['max_ms']:>10,.0f}   {lat.note}"
        )


# ---- the stages --------------------------------------------------------------------------
def bench_e2e(placements: int = SIZES["national"], *, keep_logs: bool = False, seed: int = 42) -> dict[str, Any]:
    info = ensure_up(log=lambda m: print(f"  {m}"))
    t = time.perf_counter()
    sc = generate(national(placements, seed))
    n = len(sc.events)
    print(
        f"e2e: {n:,} partner events from {len(sc.partners)} partners ({placements:,} placements, "
        f"{NATIONAL['commissioners']} commissioners, {NATIONAL['providers']} providers; generated in "
        f"{time.perf_counter() - t:.0f}s)"
    )
    machine = procstat.machine()
    print(f"  machine: {machine['nproc']} cores, {machine['memory']}, load {machine['load average (1, 5, 15 min)']}")
    sink = SmtpSink().start()
    system = BenchSystem(sc, info, sink, label="e2e")
    ok = False
    result: dict[str, Any] = {"stage": "e2e", "placements": placements, "events": n, "machine": machine}
    try:
        system.prepare()
        print(f"  starting {', '.join(system.services)} (namespace {system.namespace}, logs in {system.paths.logs})")
        system.start()
        items = [(system.topics.partner(p), e) for p, e in sc.events]
        stack_pids = _stack_pids(info)

        cpu_before = {svc: procstat.cpu_seconds(pid) for svc, pid in system.pids.items()}
        stack_before = {k: procstat.tree_cpu_seconds(pid) for k, pid in stack_pids.items()}
        # The producer, the polling and the SMTP sink (this process alone: the services are its children).
        own_before = procstat.cpu_seconds(os.getpid())
        machine_before = procstat.MachineCpu.now()
        print("  producing the scenario and waiting until every group has read everything and every outbox is empty")

        at_drain: dict[str, Any] = {}

        def snapshot() -> None:
            """CPU when the work is drained (the emails' tail is not counted)."""
            at_drain["machine"] = procstat.MachineCpu.now()
            at_drain["cpu"] = {svc: procstat.cpu_seconds(pid) - cpu_before[svc] for svc, pid in system.pids.items()}
            at_drain["stack"] = {k: procstat.tree_cpu_seconds(pid) - stack_before[k] for k, pid in stack_pids.items()}
            at_drain["stack"]["this benchmark"] = procstat.cpu_seconds(os.getpid()) - own_before

        async def replay() -> tuple[Produced, float, Quiet]:
            started = time.time()
            produced = await produce(system.settings, items, record_times=True)
            quiet = await wait_quiet(system, timeout=max(1800.0, n / 50), say=print, on_drained=snapshot)
            return produced, started, quiet

        produced, started, quiet = asyncio.run(replay())
        machine_after = at_drain["machine"]
        cpu = at_drain["cpu"]
        stack_cpu = at_drain["stack"]
        rss = {svc: procstat.peak_rss_mib(pid) for svc, pid in system.pids.items()}
        elapsed = quiet.drained_at - started
        rate = n / elapsed

        consumed: dict[str, int] = dict.fromkeys(system.services, 0)
        for r in quiet.lag_rows:
            consumed[system.group_service(r.group)] = consumed.get(system.group_service(r.group), 0) + r.end - r.lag

        async def published() -> dict[str, tuple[int, int]]:
            """Per service: (events published on its own topic, dead letters)."""
            out = {}
            for svc in system.services:
                [row] = await system.query(
                    svc,
                    """SELECT count(*) FILTER (WHERE topic = $1) AS events,
                              count(*) FILTER (WHERE topic = $2) AS dead FROM outbox""",
                    system.topics.internal(svc),
                    system.topics.dlq(svc),
                )
                out[svc] = (int(row["events"]), int(row["dead"]))
            return out

        outbox_rows = asyncio.run(published())
        assert produced.timestamps is not None
        produced_at = {e.id: produced.timestamps[i] for i, (_, e) in enumerate(items)}

        async def latencies() -> list[Latency]:
            tracer = Tracer(produced_at, await correlation_map(system))
            return await effect_latencies(system, tracer)

        lats = asyncio.run(latencies())
        system.stop()

        print("  baseline (a): raw aiokafka consumer + asyncpg COPY of the same partner messages")
        raw_n, raw_s = asyncio.run(
            raw_copy_baseline(info, [system.topics.partner(p) for p in sc.partners], system.token)
        )
        # Onto the same partner topics, now that no service reads them: no new topics to create
        # (hundreds of fresh partitions would measure the broker creating them).
        print("  baseline (b): the producer alone, the same events again onto the same topics, nobody reading")
        alone = asyncio.run(produce(system.settings, items))
        raw_rate = raw_n / raw_s

        print(f"e2e results ({n:,} partner events):")
        print(_row("partner events/s end to end", f"{rate:,.0f}", f"{elapsed:.1f}s to zero lag and empty outboxes"))
        print(_row("  baseline (a) raw consumer + COPY", f"{raw_rate:,.0f}", f"{raw_n:,} messages in {raw_s:.1f}s"))
        print(_row("  baseline (b) producer alone", f"{alone.rate:,.0f}", f"{alone.seconds:.1f}s"))
        print(_row("  end to end / raw baseline", f"{rate / raw_rate:.1%}", f"target >= {TARGET_SHARE_OF_RAW:.0%}"))
        print(_row("  end to end / producer alone", f"{rate / alone.rate:.1%}"))
        print(
            _row("  the replay's producer (beside the services)", f"{produced.rate:,.0f}", f"{produced.seconds:.1f}s")
        )
        if quiet.mailed_at is not None:
            print(_row("  emails all sent after", f"{quiet.mailed_at - started:.1f}s", f"{sink.count:,} accepted"))
        share = machine_after.busy_share_since(machine_before)
        print(_row("  machine busy (all cores, until drained)", f"{share:.0%}", "includes anything else on the box"))
        print(
            f"  {'service':<16}{'consumed':>10}{'published':>11}{'dead':>7}{'msg/s':>9}{'CPU s':>8}{'CPU ms/msg':>12}"
            f"{'peak RSS MiB':>14}"
        )
        for svc in system.services:
            c = consumed.get(svc, 0)
            per = cpu[svc] * 1000 / c if c else float("nan")
            peak = rss[svc]
            events, dead = outbox_rows[svc]
            print(
                f"  {svc:<16}{c:>10,}{events:>11,}{dead:>7,}{c / elapsed:>9,.0f}{cpu[svc]:>8.1f}{per:>12.2f}"
                f"{(peak or 0):>14.0f}{'' if (peak or 0) <= TARGET_RSS_MIB else '  over 200 MB'}"
            )
        dead_total = sum(dead for _, dead in outbox_rows.values())
        if dead_total:
            print(
                f"  WARNING: {dead_total:,} messages were dead-lettered (see the services' logs): figures are suspect"
            )
        for k, v in stack_cpu.items():
            note = "" if k == "this benchmark" else "   (shared; includes other users)"
            print(f"  {k:<16}{'':>37}{v:>8.1f}{note}")
        _print_latencies(lats)
        result.update(
            {
                "elapsed_s": round(elapsed, 2),
                "events_per_s": round(rate, 1),
                "raw_baseline": {"messages": raw_n, "seconds": round(raw_s, 2), "per_s": round(raw_rate, 1)},
                "producer_alone": {"seconds": round(alone.seconds, 2), "per_s": round(alone.rate, 1)},
                "replay_producer_per_s": round(produced.rate, 1),
                "share_of_raw": round(rate / raw_rate, 3),
                "share_of_producer": round(rate / alone.rate, 3),
                "machine_busy_share": round(share, 3),
                "emails_accepted": sink.count,
                "emails_sent_after_s": None if quiet.mailed_at is None else round(quiet.mailed_at - started, 1),
                "services": {
                    svc: {
                        "consumed": consumed.get(svc, 0),
                        "published": outbox_rows[svc][0],
                        "dead_letters": outbox_rows[svc][1],
                        "messages_per_s": round(consumed.get(svc, 0) / elapsed, 1),
                        "cpu_s": round(cpu[svc], 2),
                        "peak_rss_mib": None if rss[svc] is None else round(rss[svc] or 0, 1),
                    }
                    for svc in system.services
                },
                "stack_cpu_s": {k: round(v, 1) for k, v in stack_cpu.items()},
                "latency": [lat.summary() for lat in lats],
                "targets": {
                    "events_per_s": _check(rate >= TARGET_EVENTS_PER_S),
                    "share_of_raw": _check(rate / raw_rate >= TARGET_SHARE_OF_RAW),
                    "rss": _check(all((v or 0) <= TARGET_RSS_MIB for v in rss.values())),
                },
            }
        )
        print(
            f"  targets: >= {TARGET_EVENTS_PER_S:,} events/s: {result['targets']['events_per_s']}; "
            f">= {TARGET_SHARE_OF_RAW:.0%} of raw: {result['targets']['share_of_raw']}; "
            f"<= {TARGET_RSS_MIB} MB RSS each: {result['targets']['rss']}"
        )
        result["load_at_end"] = procstat.machine()["load average (1, 5, 15 min)"]
        print(f"  load average at the end: {result['load_at_end']}")
        print(f"  saved {save(result, 'e2e')}")
        ok = True
        return result
    finally:
        sink.stop()
        system.cleanup(keep_logs=keep_logs or not ok)
        if not ok:
            print(f"  (logs kept in {system.paths.logs})")


def _stack_pids(info: StackInfo) -> dict[str, int]:
    """Kafka's and PostgreSQL's pids (to report their CPU alongside; they are shared)."""
    from homeward.devstack import StackConfig
    from homeward.devstack.proc import port_owner_pid

    cfg = StackConfig.load()
    out = {}
    for name, port in (("kafka (broker)", cfg.kafka_port), ("postgresql (all)", cfg.pg_port)):
        pid = port_owner_pid(port)
        if pid is not None:
            out[name] = pid
    return out


def bench_steady(
    rate: float = 200.0, seconds: float = 30.0, placements: int = 2000, *, keep_logs: bool = False, seed: int = 42
) -> dict[str, Any]:
    info = ensure_up(log=lambda m: print(f"  {m}"))
    sc = generate(national(placements, seed))
    count = min(len(sc.events), int(rate * seconds))
    print(
        f"steady: {count:,} partner events at {rate:.0f}/s for {count / rate:.0f}s "
        f"(the first events of a {placements:,}-placement national scenario), then p99 partner event -> ledger"
    )
    machine = procstat.machine()
    print(f"  machine: {machine['nproc']} cores, load {machine['load average (1, 5, 15 min)']}")
    sink = SmtpSink().start()
    system = BenchSystem(sc, info, sink, label="steady")
    ok = False
    result: dict[str, Any] = {"stage": "steady", "rate": rate, "events": count, "machine": machine}
    try:
        system.prepare()
        print(f"  starting {', '.join(system.services)} (namespace {system.namespace})")
        system.start()
        items = [(system.topics.partner(p), e) for p, e in sc.events[:count]]

        async def run() -> tuple[dict[str, float], dict[str, tuple[str, float, float]], float]:
            seen: dict[str, tuple[str, float, float]] = {}  # transfer id -> (cause, created_at, first seen)
            conn = await asyncpg.connect(system.dsns["budget"])
            stop = asyncio.Event()

            async def poll() -> None:
                # Rows above the highest sequence number below which everything has been seen.
                # Transactions commit out of seq order, so a gap may fill in later; a gap that
                # stays (a conflicting insert or a rollback used the number) is skipped after 3 s.
                low, seqs, gap_since = 0, set(), None
                while True:
                    rows = await conn.fetch(
                        "SELECT id::text AS id, cause, created_at, seq FROM transfers WHERE seq > $1", low
                    )
                    now = time.time()
                    for r in rows:
                        seqs.add(r["seq"])
                        if r["id"] not in seen:
                            seen[r["id"]] = (r["cause"], _epoch(r["created_at"]), now)
                    while seqs:
                        if low + 1 in seqs:
                            low += 1
                            seqs.discard(low)
                            gap_since = None
                        elif gap_since is None:
                            gap_since = now
                            break
                        elif now - gap_since > 3:
                            low = min(seqs) - 1
                            gap_since = None
                        else:
                            break
                    if stop.is_set():
                        return
                    await asyncio.sleep(0.02)

            poller = asyncio.create_task(poll())
            producer = make_producer(system.settings, "bench-steady")
            await producer.start()
            try:
                await wait_for_leaders(producer, sorted({t for t, _ in items}))
                futures = []
                start = time.perf_counter()
                for i, (topic, event) in enumerate(items):
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    key, value, headers = event.to_kafka()
                    futures.append(await producer.send(topic, value=value, key=key, headers=headers))
                metas = await asyncio.gather(*futures)
                sent_for = time.perf_counter() - start
            finally:
                await producer.stop()
            await wait_quiet(system, timeout=600, mail_timeout=0, say=print)
            await asyncio.sleep(0.2)
            stop.set()
            await poller
            await conn.close()
            produced_at = {e.id: metas[i].timestamp / 1000 for i, (_, e) in enumerate(items)}
            return produced_at, seen, sent_for

        produced_at, seen, sent_for = asyncio.run(run())
        tracer = Tracer(produced_at, asyncio.run(correlation_map(system)))
        stamped = tracer.latency(
            "ledger transfer (created_at)", [(c, at) for c, at, _ in seen.values()], "PostgreSQL now(): tx start"
        )
        observed = tracer.latency(
            "ledger transfer (seen committed)", [(c, obs) for c, _, obs in seen.values()], "poller, every 20 ms"
        )
        others = asyncio.run(effect_latencies(system, tracer))
        system.stop()
        p99 = percentile(observed.values, 99) if observed.values else float("nan")
        print(f"steady results: {count:,} events sent in {sent_for:.1f}s ({count / sent_for:,.0f}/s)")
        _print_latencies([observed, stamped, *[lat for lat in others if lat.effect != "budget ledger transfer"]])
        print(
            f"  target p99 partner event -> ledger transfer <= {TARGET_STEADY_P99_MS} ms at {rate:.0f}/s: "
            f"{p99:,.0f} ms seen committed, {_check(p99 <= TARGET_STEADY_P99_MS)}"
        )
        result.update(
            {
                "sent_per_s": round(count / sent_for, 1),
                "latency": [observed.summary(), stamped.summary(), *[lat.summary() for lat in others]],
                "target": _check(p99 <= TARGET_STEADY_P99_MS),
            }
        )
        result["load_at_end"] = procstat.machine()["load average (1, 5, 15 min)"]
        print(f"  load average at the end: {result['load_at_end']}")
        print(f"  saved {save(result, 'steady')}")
        ok = True
        return result
    finally:
        sink.stop()
        system.cleanup(keep_logs=keep_logs or not ok)
        if not ok:
            print(f"  (logs kept in {system.paths.logs})")


# ---- the producer, before and after ------------------------------------------------------
async def legacy_produce(settings: KafkaSettings, items: list[tuple[str, Any]]) -> None:
    """The CLI's producer as it was: the kit's relay producer (linger 5 ms), every record's
    send awaited in turn (each new topic waiting on its own metadata request), the
    acknowledgements gathered every 500."""
    import logging

    logging.getLogger("aiokafka.producer").setLevel(logging.ERROR)
    producer = make_producer(settings, "cli")
    await producer.start()
    try:
        pending = []
        for topic, event in items:
            key, value, headers = event.to_kafka()
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def bench_producer(placements: int = 2000, seed: int = 42) -> dict[str, Any]:
    """`homeward scenario`'s producer before and after, each onto freshly created topics (as
    the command does), then onto the same topics once they exist (the better of two runs)."""
    info = ensure_up(log=lambda m: print(f"  {m}"))
    sc = generate(national(placements, seed))
    n = len(sc.events)
    print(f"producer: {n:,} events onto {len(sc.partners)} partner topics ({placements:,}-placement national scenario)")
    out: dict[str, Any] = {"stage": "producer", "events": n}
    namespaces = []
    try:
        for name in ("before", "after"):
            ns = f"benchq{secrets.token_hex(3)}."
            namespaces.append(ns)
            settings = info.kafka_settings(namespace=ns)
            topics = Topics(ns)
            items = [(topics.partner(p), e) for p, e in sc.events]
            asyncio.run(ensure_topics(settings, topics.declared(tuple(sc.partners))))
            # Fresh topics once; then the same topics twice more, the better of the two (the
            # broker goes on settling ~1,700 new partitions for a while after they answer).
            for when in ("fresh topics", "existing topics", "existing topics"):
                t = time.perf_counter()
                if name == "before":
                    asyncio.run(legacy_produce(settings, items))
                else:
                    asyncio.run(produce(settings, items))
                rate = round(n / (time.perf_counter() - t), 1)
                out[f"{name}, {when}"] = max(rate, out.get(f"{name}, {when}", 0.0))
        base = out["before, fresh topics"]
        for key in ("before, fresh topics", "before, existing topics", "after, fresh topics", "after, existing topics"):
            print(f"  {key:<28}{out[key]:>12,.0f} events/s   ({out[key] / base:.1f}x before on fresh topics)")
        return out
    finally:
        for ns in namespaces:
            delete_namespace_topics(info, ns)
