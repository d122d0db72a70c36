"""Benchmarks: each prints its figures next to a baseline measured in the same run, on the
same machine, so the comparison means something on a noisy 2-core box. Run `make bench`
(every stage, national size: about an hour on 2 cores at today's speed) or pick stages by name:

    uv run --frozen python -m benchmarks                        # all stages
    uv run --frozen python -m benchmarks e2e --placements 2000  # one stage, a smaller replay
    uv run --frozen python -m benchmarks e2e --size 1m          # about a million partner events
    uv run --frozen python -m benchmarks steady --rate 200 --seconds 30

1. contracts: validating events (parse_kafka) against plain json.loads of the same bytes.
2. memory: peak memory of generating the national-scale scenario against the Coming Home one.
3. consumer: the kit's batch consumer on the real PostgreSQL, batches of 500 against
   batches of 1 (what per-message commits would cost) — the reason services consume in batches.
4. producer: `homeward scenario`'s producer before and after it stopped waiting on each
   topic's metadata and each chunk of acknowledgements.
5. budget: the budget service's handlers alone (benchmarks/budget_stage.py).
6. e2e: the national scenario through every service the main job starts, in a namespace and
   databases of its own; partner events/s, per-service messages/s, CPU and peak memory,
   latencies; against a raw consumer + COPY and the producer alone (benchmarks/e2e.py).
7. steady: p99 from partner event to ledger transfer at a steady rate.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer
from homeward.contracts import parse_kafka

from homeward.scenario import ScenarioConfig, generate


def _best_of(fn: Callable[[], Any], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_contracts() -> None:
    sc = generate(ScenarioConfig(placements=2000, seed=1))
    records = [e.to_kafka() for _, e in sc.events]
    n = len(records)
    baseline = _best_of(lambda: [json.loads(v) for _, v, _ in records])
    measured = _best_of(lambda: [parse_kafka(v, h) for _, v, h in records])
    print(f"contracts: {n} events")
    print(f"  baseline json.loads        {n / baseline:>12,.0f} events/s")
    ratio = measured / baseline
    print(f"  parse_kafka (validated)    {n / measured:>12,.0f} events/s   ({ratio:.1f}x the baseline's time)")


async def _consumer_rate(batch: int, total: int) -> float:
    from homeward.contracts import new_event, partner_source
    from homeward.contracts.events import BedAvailabilityUpdated
    from homeward.devstack import ensure_up
    from homeward.kit.consumer import EventConsumer, Record
    from homeward.kit.db import create_pool, migrate

    info = ensure_up()
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(info.postgres_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = info.postgres_admin_dsn.rpartition("/")[0] + "/" + name
    try:
        await migrate(dsn, "bench", None)
        pool = await create_pool(dsn, 1, 2)

        async def handle(event: Any, uow: Any) -> None:
            await uow.conn.execute("SELECT 1")

        consumer = EventConsumer("bench", pool, {BedAvailabilityUpdated: handle})
        records = []
        for i in range(total):
            data = BedAvailabilityUpdated.model_validate_json(
                json.dumps(
                    {
                        "provider": "RYG",
                        "site": "RYG01",
                        "site_area": "05A",
                        "bed_type": "picu",
                        "available_beds": i % 5,
                        "as_of": "2026-01-01T00:00:00Z",
                    }
                )
            )
            _, value, headers = new_event(data, source=partner_source("RYG")).to_kafka()
            records.append(Record("partner.RYG.events", 0, i, b"RYG01", value, tuple(headers)))
        t = time.perf_counter()
        for start in range(0, total, batch):
            await consumer.handle_batch(records[start : start + batch])
        elapsed = time.perf_counter() - t
        await pool.close()
        return total / elapsed
    finally:
        admin = await asyncpg.connect(info.postgres_admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def bench_consumer() -> None:
    single = asyncio.run(_consumer_rate(1, 1000))
    batched = asyncio.run(_consumer_rate(500, 5000))
    print("consumer (inbox + handler + commit on the real PostgreSQL):")
    print(f"  baseline batch of 1        {single:>12,.0f} events/s")
    print(f"  batch of 500               {batched:>12,.0f} events/s   ({batched / single:.1f}x the baseline)")


def bench_memory() -> None:
    def peak(config: ScenarioConfig) -> tuple[int, int]:
        tracemalloc.start()
        sc = generate(config)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, len(sc.events)

    base, base_n = peak(ScenarioConfig())
    national, national_n = peak(ScenarioConfig(commissioners=42, distant_providers=300, placements=20_000))
    print("memory (scenario generation, peak traced):")
    print(f"  baseline Coming Home       {base / 2**20:>10.1f} MiB for {base_n:,} events")
    print(
        f"  national scale             {national / 2**20:>10.1f} MiB for {national_n:,} events "
        f"({national / national_n:,.0f} bytes/event vs {base / base_n:,.0f})"
    )


def bench_budget_stage() -> None:
    try:
        from .budget_stage import bench_budget
    except ModuleNotFoundError as exc:  # benchmarks/budget_stage.py is written separately
        print(f"budget: skipped ({exc})")
        return
    bench_budget()


STAGES = ("contracts", "memory", "consumer", "producer", "budget", "e2e", "steady")


app = typer.Typer(add_completion=False)


@app.command(help=__doc__.split("\n\n")[0])
def bench(
    stages: Annotated[
        list[str] | None, typer.Argument(metavar="STAGE", help=f"any of {', '.join(STAGES)} (default: all)")
    ] = None,
    placements: Annotated[
        int | None, typer.Option(help="placements in the e2e replay (default 20,000: the national scenario)")
    ] = None,
    size: Annotated[
        str | None, typer.Option(help="national (about 114,000 events, the default) or 1m (about 1,000,000)")
    ] = None,
    rate: Annotated[float, typer.Option(help="steady: partner events per second")] = 200.0,
    seconds: Annotated[float, typer.Option(help="steady: for how long")] = 30.0,
    keep_logs: Annotated[bool, typer.Option("--keep-logs", help="keep the services' logs under .local/bench/")] = False,
) -> None:
    from .e2e import SIZES, bench_e2e, bench_producer, bench_steady

    unknown = [s for s in stages or [] if s not in STAGES]
    if unknown:
        raise typer.BadParameter(f"no stage {', '.join(unknown)}; the stages are {', '.join(STAGES)}")
    if placements is not None and size is not None:
        raise typer.BadParameter("give --placements or --size, not both")
    if size is not None and size not in SIZES:
        raise typer.BadParameter(f"--size is one of {', '.join(sorted(SIZES))}")
    count = placements or SIZES[size or "national"]
    run = {
        "contracts": bench_contracts,
        "memory": bench_memory,
        "consumer": bench_consumer,
        "producer": lambda: bench_producer(min(count, 2000)),
        "budget": bench_budget_stage,
        "e2e": lambda: bench_e2e(count, keep_logs=keep_logs),
        "steady": lambda: bench_steady(rate, seconds, keep_logs=keep_logs),
    }
    for i, stage in enumerate(dict.fromkeys(stages or STAGES)):
        if i:
            print()
        t = time.perf_counter()
        run[stage]()
        print(f"({stage}: {time.perf_counter() - t:.0f}s)")


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="python -m benchmarks")


if __name__ == "__main__":
    main()
