"""Budget stage: the budget's real handlers, through the kit's EventConsumer, on the real
PostgreSQL, with one consumer and with two at once (each in its own process with its own
connection, as two replicas are), with the per-key ledger locks and, as the baseline, with
every key mapped to the one ledger lock budget used to take.

    uv run --frozen python -m benchmarks.budget_stage                       # 3,000 placements, 42 commissioners
    uv run --frozen python -m benchmarks.budget_stage --placements 20000 --repeats 1
    uv run --frozen python -m benchmarks.budget_stage --batch 20            # smaller batches, shorter lock holds
    uv run --frozen python -m benchmarks.budget_stage --layouts "1 consumer" --no-baseline --profile budget.prof

The events are what budget consumes in a replay of a generated national scenario: the partners'
``BudgetAllocated`` and ``InvoiceReceived`` (on ``partner.<ODS>.events``, keyed by commissioner)
and what the placements service publishes from the partners' placement events
(``PlacementRegistered``, ``PlacementRateChanged``, ``PlacementClosed``, ``PatientRepatriated`` on
``homeward.placements.v1``, keyed by commissioner as placements keys them), built here the way
placements builds them. Each record goes to partition ``crc32(key) % 6`` of its topic. Two layouts:

* ``1 consumer`` reads every partition;
* ``2 replicas``: two consumers, each with the same half of the partitions of every topic, as the
  kit's client ids make a consumer group assign them (homeward.contracts.topics.KEYED_BY).

A replica runs its two subscriptions' batches one at a time (the kit's ``one_batch_at_a_time``),
so one consumer per replica, reading its partitions of both topics in time order, is what it does.

Each consumer reads its records in event-time order, in batches of ``--batch`` records (one
database transaction each, as in the service; a batch the kit gives up on after transient errors
is run again after a pause, as the runtime does). Each run gets its own database, created and
dropped here; the shared stack is never reset. After each run the invariant check must pass and
the ledger must hold exactly what every other run's holds. CPU per event is the consumer
process's and its PostgreSQL backend's (read from /proc when the database is local).
"""

from __future__ import annotations

import asyncio
import cProfile
import datetime as dt
import hashlib
import multiprocessing as mp
import os
import pstats
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
import typer
from homeward.contracts import Event, new_event, service_source
from homeward.contracts.events import (
    BudgetAllocated,
    FundingShare,
    InvoiceReceived,
    PatientRepatriated,
    PlacementClosed,
    PlacementEnded,
    PlacementMade,
    PlacementRateChanged,
    PlacementRegistered,
)
from homeward.contracts.topics import publish_key
from homeward.contracts.vocab import BedType, OutOfAreaReason, Setting
from homeward.kit.consumer import EventConsumer, InfrastructureError, Record

from homeward.scenario import ScenarioConfig, generate

PARTITIONS = 6
PLACEMENTS_TOPIC = "homeward.placements.v1"
SECURE = {BedType.LOW_SECURE, BedType.MEDIUM_SECURE, BedType.HIGH_SECURE}
COMMUNITY = {BedType.RESIDENTIAL_CARE, BedType.NURSING_HOME_DEMENTIA, BedType.SUPPORTED_LIVING}
NAMESPACE = uuid.UUID("0c7f3e2a-1b5d-4c8e-9a6f-2d4b8e1c3a70")


# ----------------------------------------------------------------------------- events


def _patient_ref(nhs_number: str) -> str:
    return "pt_" + hashlib.sha256(nhs_number.encode()).hexdigest()[:32]


def _setting(bed: BedType) -> Setting:
    return Setting.SECURE if bed in SECURE else Setting.COMMUNITY if bed in COMMUNITY else Setting.INPATIENT


def _from_placements(payload: Any, cause: Event[Any], purpose: str) -> Event[Any]:
    eid = str(uuid.uuid5(NAMESPACE, f"{cause.id}:{purpose}"))
    return new_event(payload, source=service_source("placements"), id=eid, time=cause.time)


def budget_events(config: ScenarioConfig) -> list[tuple[str, Event[Any]]]:
    """(topic, event) for everything budget consumes in a replay of ``config``'s scenario, in time order."""
    sc = generate(config)
    areas = {c["code"]: c["area"] for c in sc.reference["commissioners"]}
    site_areas = {s["code"]: s["area"] for s in sc.reference["sites"]}
    registered: dict[str, tuple[PlacementRegistered, Event[Any], list[tuple[dt.date, int]]]] = {}
    ended: dict[str, tuple[PlacementEnded, Event[Any]]] = {}
    out: list[tuple[dt.datetime, int, str, Event[Any]]] = []

    def emit(topic: str, event: Event[Any]) -> None:
        out.append((event.time, len(out), topic, event))

    def repatriate(source_id: str, target_id: str, cause: Event[Any]) -> None:
        src, _, rates = registered[source_id]
        dst, _, _ = registered[target_id]
        end = ended[source_id][0].end_date
        if not src.out_of_area or dst.out_of_area or abs((dst.start_date - end).days) > 14:
            return
        last_rate = [r for d, r in sorted(rates) if d < end][-1] if end > src.start_date else rates[0][1]
        payload = PatientRepatriated(
            patient_ref=src.patient_ref,
            commissioner=src.commissioner,
            programme=src.programme,
            from_placement_id=source_id,
            to_placement_id=target_id,
            from_site=src.provider_site,
            to_site=dst.provider_site,
            from_daily_rate_pence=last_rate,
            to_daily_rate_pence=dst.daily_rate_pence,
            repatriated_on=dst.start_date,
            explicit=False,
            funding=list(src.funding),
        )
        emit(PLACEMENTS_TOPIC, _from_placements(payload, cause, "repatriated"))

    for sender, e in sc.events:
        d: Any = e.data
        if isinstance(d, BudgetAllocated | InvoiceReceived):
            emit(f"partner.{sender}.events", e)
        elif isinstance(d, PlacementMade):
            site_area = d.provider_site_area or site_areas[d.provider_site]
            home = areas.get(d.commissioner, d.commissioner)
            out_of_area = site_area != home
            payload = PlacementRegistered(
                placement_id=d.placement_id,
                referral_id=d.referral_id,
                patient_ref=_patient_ref(d.nhs_number),
                commissioner=d.commissioner,
                commissioner_area=home,
                provider=d.provider,
                provider_site=d.provider_site,
                provider_site_area=site_area,
                independent_provider=d.independent_provider,
                bed_type=d.bed_type,
                setting=_setting(d.bed_type),
                cohort=d.cohort,
                age_band=d.age_band,
                legal_status=d.legal_status,
                programme=d.programme,
                start_date=d.start_date,
                planned_end_date=d.planned_end_date,
                daily_rate_pence=d.daily_rate_pence,
                out_of_area=out_of_area,
                out_of_area_reason=d.out_of_area_reason,
                inappropriate=out_of_area and d.out_of_area_reason is OutOfAreaReason.NO_LOCAL_BED,
                distance_from_home_km=d.distance_from_home_km,
                funding=list(d.funding) or [FundingShare(commissioner=d.commissioner, share_bp=10_000)],
            )
            event = _from_placements(payload, e, "registered")
            registered[d.placement_id] = (payload, event, [(d.start_date, d.daily_rate_pence)])
            emit(PLACEMENTS_TOPIC, event)
            for source_id, (ending, _) in ended.items():
                if ending.transfer_to_placement_id == d.placement_id:
                    repatriate(source_id, d.placement_id, event)
        elif isinstance(d, PlacementRateChanged) and d.placement_id in registered:
            registered[d.placement_id][2].append((d.effective_date, d.daily_rate_pence))
            emit(PLACEMENTS_TOPIC, _from_placements(d, e, "rate"))
        elif isinstance(d, PlacementEnded) and d.placement_id in registered:
            reg = registered[d.placement_id][0]
            ended[d.placement_id] = (d, e)
            closed = PlacementClosed(
                placement_id=d.placement_id,
                patient_ref=reg.patient_ref,
                commissioner=reg.commissioner,
                provider_site=reg.provider_site,
                end_date=d.end_date,
                end_reason=d.end_reason,
                out_of_area=reg.out_of_area,
                length_of_stay_nights=max(0, (d.end_date - reg.start_date).days),
            )
            emit(PLACEMENTS_TOPIC, _from_placements(closed, e, "closed"))
            if d.transfer_to_placement_id and d.transfer_to_placement_id in registered:
                repatriate(d.placement_id, d.transfer_to_placement_id, e)
    out.sort(key=lambda t: (t[0], t[1]))
    return [(topic, event) for _, _, topic, event in out]


def partition_of(key: bytes) -> int:
    return zlib.crc32(key) % PARTITIONS


def records_for(events: Sequence[tuple[str, Event[Any]]]) -> list[Record]:
    """Kafka records in time order, each on its key's partition, with per-partition offsets."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for topic, event in events:
        key, value, headers = event.to_kafka()
        if topic == PLACEMENTS_TOPIC:  # keyed as placements keys what it publishes
            key = publish_key("placements", event.data).encode()
        p = partition_of(key)
        offset = offsets.get((topic, p), 0)
        offsets[(topic, p)] = offset + 1
        out.append(Record(topic, p, offset, key, value, tuple(headers)))
    return out


LAYOUTS = {
    "1 consumer": "every partition of every topic",
    "2 replicas": "two consumers, each with half the partitions of every topic",
}


def assign(records: Sequence[Record], layout: str) -> list[list[Record]]:
    """Split the records between consumers as one consumer group would (disjoint partitions)."""
    if layout == "1 consumer":
        return [list(records)]
    if layout == "2 replicas":
        return [[r for r in records if r.partition % 2 == i] for i in range(2)]
    raise ValueError(layout)


# ------------------------------------------------------------------------------ running


@dataclass
class Run:
    label: str
    layout: str
    events: int
    seconds: float
    cpu: float
    db_cpu: float
    handled: int
    dead_letters: int
    reruns: int
    alerts: str
    ledger: str
    check_ok: bool
    problems: list[str]
    load: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def _unit_of_work(single_lock: bool) -> Any:
    import functools

    from homeward.budget.adapters.postgres import PgBudgetUnitOfWork
    from homeward.budget.ports import Config

    patience = os.environ.get("BUDGET_STAGE_PATIENCE_MS")  # an experiment: "none" waits like any lock
    options: dict[str, Any] = {}
    if single_lock:
        options = {"single_lock": True}
    elif patience is not None:
        options = {"patience_ms": None if patience == "none" else int(patience)}
    return functools.partial(PgBudgetUnitOfWork, config=Config(), ledger_options=options)


async def _consume(
    dsn: str, records: Sequence[Record], batch: int, single_lock: bool, today: dt.date, ready: Any
) -> dict[str, Any]:
    from homeward.budget.handlers import HANDLERS
    from homeward.kit.clock import FixedClock
    from homeward.kit.logging import configure_logging

    configure_logging("budget", "WARNING", "console")  # the handlers' info lines would cost more than they show
    # One connection, never recycled, so one database backend whose CPU time can be read from /proc.
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, max_queries=2**62, command_timeout=120)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        consumer = EventConsumer(
            "budget", pool, HANDLERS, clock=FixedClock(today), unit_of_work=_unit_of_work(single_lock)
        )
        if ready is not None:
            ready.wait()
        started, cpu, db_cpu = time.monotonic(), time.process_time(), _cpu_of(backend)
        handled = dead = rewound = 0
        for i in range(0, len(records), batch):
            while True:
                try:
                    result = await consumer.handle_batch(records[i : i + batch])
                    break
                except InfrastructureError:  # what the runtime does: pause, and the batch comes again
                    rewound += 1
                    await asyncio.sleep(2.0)
            handled += result.handled
            dead += len(result.dead_lettered)
        return {
            "started": started,
            "ended": time.monotonic(),
            "cpu": time.process_time() - cpu,
            "db_cpu": _cpu_of(backend) - db_cpu,
            "handled": handled,
            "dead": dead,
            "reruns": _reruns() + rewound,
        }
    finally:
        await pool.close()


def _cpu_of(pid: int) -> float:
    """CPU seconds a local process has used (the PostgreSQL backend), or NaN if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _reruns() -> int:
    """Batches the kit rolled back and ran again (after a deadlock or a lock refused out of order)."""
    try:
        from homeward.kit.metrics import BATCH_RETRIES  # type: ignore[attr-defined]
    except ImportError:
        return 0
    return int(sum(s.value for m in BATCH_RETRIES.collect() for s in m.samples if s.name.endswith("_total")))


def _child(
    dsn: str, records: list[Record], batch: int, single_lock: bool, today: dt.date, ready: Any, results: Any
) -> None:
    try:
        results.put(asyncio.run(_consume(dsn, records, batch, single_lock, today, ready)))
    except BaseException as exc:
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


async def _create_database(admin_dsn: str) -> str:
    from homeward.budget.entrypoints.app import MIGRATIONS
    from homeward.kit.db import migrate

    name = f"bench_budget_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = admin_dsn.rpartition("/")[0] + "/" + name
    await migrate(dsn, "budget", MIGRATIONS)
    return dsn


async def _drop_database(admin_dsn: str, dsn: str) -> None:
    name = dsn.rpartition("/")[2]
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _inspect(dsn: str, today: dt.date) -> tuple[str, str, bool, list[str]]:
    """(digest of every account's balances, number and digest of the alerts queued, invariant check ok, problems),
    after the thresholds job has judged the ledger as the consumers left it (untimed)."""
    from homeward.budget.adapters.postgres import check
    from homeward.budget.entrypoints.jobs import run_thresholds
    from homeward.budget.ports import Config
    from homeward.kit.clock import FixedClock
    from homeward.kit.logging import configure_logging
    from homeward.kit.topics import Topics

    configure_logging("budget", "WARNING", "console")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await run_thresholds(pool, FixedClock(today), topics=Topics(), config=Config())
    finally:
        await pool.close()
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT ledger, commissioner, financial_year, programme, kind, counterparty, locality,
                      debits_pending, debits_posted, credits_pending, credits_posted
               FROM accounts ORDER BY 1, 2, 3, 4, 5, 6, 7"""
        )
        digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()[:16]
        ids = [r["event_id"] for r in await conn.fetch("SELECT event_id FROM outbox WHERE event_type <> 'dead-letter'")]
        alerts = f"{len(ids)} ({hashlib.sha256(repr(sorted(ids)).encode()).hexdigest()[:8]})"
        report = await check(conn)
    finally:
        await conn.close()
    return digest, alerts, report.ok, report.problems[:5]


def run(admin_dsn: str, records: list[Record], *, layout: str, batch: int, single_lock: bool, today: dt.date) -> Run:
    """One run on a fresh database: every consumer in its own process, all started together."""
    dsn = asyncio.run(_create_database(admin_dsn))
    try:
        parts = assign(records, layout)
        ctx = mp.get_context("spawn")
        ready = ctx.Barrier(len(parts))
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_child, args=(dsn, part, batch, single_lock, today, ready, results)) for part in parts
        ]
        load = os.getloadavg()[0]
        for p in procs:
            p.start()
        outcomes = [results.get() for _ in procs]
        for p in procs:
            p.join()
        errors = [o["error"] for o in outcomes if "error" in o]
        if errors:
            raise RuntimeError(f"a consumer failed: {errors[0]}")
        seconds = max(o["ended"] for o in outcomes) - min(o["started"] for o in outcomes)
        digest, alerts, ok, problems = asyncio.run(_inspect(dsn, today))
        return Run(
            "one ledger lock" if single_lock else "per-key locks",
            layout,
            len(records),
            seconds,
            sum(o["cpu"] for o in outcomes),
            sum(o["db_cpu"] for o in outcomes),
            sum(o["handled"] for o in outcomes),
            sum(o["dead"] for o in outcomes),
            sum(o["reruns"] for o in outcomes),
            alerts,
            digest,
            ok,
            problems,
            (load + os.getloadavg()[0]) / 2,
        )
    finally:
        asyncio.run(_drop_database(admin_dsn, dsn))


def profile(admin_dsn: str, records: list[Record], *, batch: int, today: dt.date, out: str) -> None:
    """One consumer in this process under cProfile; writes ``out`` and prints the top functions."""
    dsn = asyncio.run(_create_database(admin_dsn))
    try:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(_consume(dsn, records, batch, False, today, None))
        profiler.disable()
        profiler.dump_stats(out)
        stats = pstats.Stats(out)
        stats.sort_stats("cumulative").print_stats(r"homeward/budget|kit/consumer|asyncpg/connection", 25)
        stats.sort_stats("tottime").print_stats(15)
    finally:
        asyncio.run(_drop_database(admin_dsn, dsn))


def bench_budget(
    placements: int = 3000,
    commissioners: int = 42,
    batch: int = 500,
    layouts: Sequence[str] = tuple(LAYOUTS),
    baseline: bool = True,
    repeats: int = 2,
    seed: int = 7,
    profile_to: str | None = None,
) -> list[Run]:
    from homeward.devstack import ensure_up

    info = ensure_up()
    config = ScenarioConfig(
        seed=seed,
        commissioners=commissioners,
        distant_providers=max(6, commissioners * 7),
        placements=placements,
    )
    events = budget_events(config)
    records = records_for(events)
    today = config.as_of
    kinds: dict[str, int] = {}
    for _, e in events:
        kinds[type(e.data).__name__] = kinds.get(type(e.data).__name__, 0) + 1
    print(
        f"budget stage: {placements:,} placements, {commissioners} commissioners -> {len(records):,} events "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}); batches of {batch}"
    )
    if profile_to:
        profile(info.postgres_admin_dsn, records, batch=batch, today=today, out=profile_to)
        return []
    modes = [False, True] if baseline else [False]
    runs: list[Run] = []
    # Interleaved and repeated: on a shared machine the best of each is the least disturbed.
    for _ in range(repeats):
        for single_lock in modes:
            for layout in layouts:
                r = run(
                    info.postgres_admin_dsn, records, layout=layout, batch=batch, single_lock=single_lock, today=today
                )
                runs.append(r)
                print(
                    f"  {r.label:<15} {r.layout:<16} {r.rate:>6,.0f} events/s ({r.seconds:6.1f} s, load {r.load:.1f}; "
                    f"CPU/event {1000 * r.cpu / r.events:.2f} ms consumer + {1000 * r.db_cpu / r.events:.2f} ms "
                    f"PostgreSQL; batches re-run {r.reruns}; dead letters {r.dead_letters}; alerts {r.alerts}; "
                    f"check {'ok' if r.check_ok else 'FAILED ' + '; '.join(r.problems)}; ledger {r.ledger})",
                    flush=True,
                )
    print(f"best of {repeats}:")
    for single_lock in modes:
        label = "one ledger lock" if single_lock else "per-key locks"
        best = {
            layout: max((r for r in runs if r.label == label and r.layout == layout), key=lambda r: r.rate)
            for layout in layouts
        }
        one = best.get("1 consumer")
        cells = []
        for layout, r in best.items():
            ratio = f" = {r.rate / one.rate:.2f}x" if one is not None and r is not one else ""
            cells.append(f"{layout} {r.rate:,.0f} events/s{ratio}")
        print(f"  {label:<15} " + "; ".join(cells))
    if len({r.ledger for r in runs}) > 1:
        print("  WARNING: the runs' ledgers differ")
    elif runs and all(r.check_ok for r in runs):
        print(f"  every run's ledger is identical ({runs[0].ledger}) and passes the invariant check")
    return runs


app = typer.Typer(add_completion=False)


@app.command(help=__doc__.split("\n\n")[0])
def stage(
    placements: Annotated[int, typer.Option()] = 3000,
    commissioners: Annotated[int, typer.Option()] = 42,
    batch: Annotated[int, typer.Option(help="records per consumer batch (one transaction)")] = 500,
    layouts: Annotated[str, typer.Option(help=f"comma-separated, of: {', '.join(LAYOUTS)}")] = ",".join(LAYOUTS),
    no_baseline: Annotated[
        bool, typer.Option("--no-baseline", help="skip the runs with the old single ledger lock")
    ] = False,
    repeats: Annotated[int, typer.Option(help="runs of each configuration (the best is reported)")] = 2,
    seed: Annotated[int, typer.Option()] = 7,
    profile: Annotated[
        str | None, typer.Option(metavar="FILE", help="instead: profile one consumer in-process with cProfile")
    ] = None,
) -> None:
    bench_budget(
        placements,
        commissioners,
        batch,
        tuple(x.strip() for x in layouts.split(",")),
        not no_baseline,
        repeats,
        seed,
        profile,
    )


def main(argv: Sequence[str] | None = None) -> None:
    app(args=None if argv is None else list(argv), prog_name="python -m benchmarks.budget_stage")


if __name__ == "__main__":
    main()
