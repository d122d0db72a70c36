"""Transient database errors, as PostgreSQL itself raises them (SQLSTATE 40P01 deadlock,
40001 serialisation failure, 53300 too many connections), in a handler of a service consuming
from the real Kafka: retried with backoff, and when they outlast the configured budget the
batch is rewound and read again; never dead-lettered (issue 14: they were retried 3 times in
about 0.6 s, then dead-lettered as handler-failed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from homeward.contracts import Event, new_event, partner_source
from homeward.contracts.events import PlacementMade
from homeward.kit.clock import FixedClock
from homeward.kit.consumer import UnitOfWork
from homeward.kit.service import ServiceDefinition, ServiceRuntime, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.testing import KafkaProbe, eventually, new_ods, sample_placement


class Flaky:
    """Raises the given SQLSTATE from PostgreSQL for the placement ``PLC-T`` while ``failing``
    (a number of times, or until told to stop), then stores it."""

    def __init__(self, sqlstate: str, times: int | None) -> None:
        self.sqlstate, self.left, self.calls = sqlstate, times, 0

    async def __call__(self, event: Event[PlacementMade], uow: UnitOfWork[Any]) -> None:
        if event.data.placement_id == "PLC-T":
            self.calls += 1
            if self.left is None or self.left > 0:
                if self.left is not None:
                    self.left -= 1
                await uow.conn.execute(
                    f"DO $$ BEGIN RAISE EXCEPTION 'made to fail' USING ERRCODE = '{self.sqlstate}'; END $$"
                )
        await uow.conn.execute(
            "INSERT INTO seen (event_id, placement_id) VALUES ($1, $2)", event.id, event.data.placement_id
        )


async def _start(tmp_path: Path, database: str, kafka: KafkaProbe, handler: Flaky, **options: Any) -> ServiceRuntime:
    (tmp_path / "0001_seen.sql").write_text(
        "CREATE TABLE seen (event_id text NOT NULL, placement_id text PRIMARY KEY);"
    )
    settings = ServiceSettings(
        database_url=database,
        http_port=0,
        retry_backoff_s=0.01,
        batch_timeout_ms=50,
        outbox_poll_interval_s=0.2,
        kafka=kafka.settings.model_copy(update={"metadata_max_age_ms": 1000}),
        **options,
    )
    runtime = ServiceRuntime(
        ServiceDefinition(
            name="placements",
            settings=settings,
            migrations=tmp_path,
            handlers={PlacementMade: handler},
            subscriptions=[Subscription(partners=True)],
        ),
        clock=FixedClock(dt.date(2026, 1, 6)),
    )
    await runtime.start()
    return runtime


async def _seen(database: str) -> list[str]:
    conn = await asyncpg.connect(database)
    try:
        return [r["placement_id"] for r in await conn.fetch("SELECT placement_id FROM seen ORDER BY placement_id")]
    finally:
        await conn.close()


async def _outbox_topics(database: str) -> list[str]:
    conn = await asyncpg.connect(database)
    try:
        return [r["topic"] for r in await conn.fetch("SELECT topic FROM outbox")]
    finally:
        await conn.close()


@pytest.mark.parametrize("sqlstate", ["40P01", "40001", "53300"], ids=["deadlock", "serialisation", "resources"])
async def test_transient_errors_from_postgresql_are_retried_not_dead_lettered(
    tmp_path: Path, database: str, kafka: KafkaProbe, sqlstate: str
) -> None:
    ods = new_ods()
    await kafka.create(partners=[ods])
    topic = kafka.topics.partner(ods)
    handler = Flaky(sqlstate, times=5)  # more than the 3 attempts a defect gets
    runtime = await _start(tmp_path, database, kafka, handler, transient_backoff_max_s=0.05)
    try:
        for pid in ("PLC-A", "PLC-T", "PLC-B"):
            await kafka.send(topic, new_event(sample_placement(pid, commissioner=ods), source=partner_source(ods)))

        async def all_seen() -> bool:
            return await _seen(database) == ["PLC-A", "PLC-B", "PLC-T"]

        assert await eventually(all_seen, timeout=60)
        assert handler.calls == 6
        assert kafka.topics.dlq("placements") not in await _outbox_topics(database)
    finally:
        await runtime.stop()


async def test_transient_errors_that_outlast_the_budget_rewind_and_the_batch_is_read_again(
    tmp_path: Path, database: str, kafka: KafkaProbe
) -> None:
    ods = new_ods()
    await kafka.create(partners=[ods])
    topic = kafka.topics.partner(ods)
    handler = Flaky("40001", times=None)
    runtime = await _start(
        tmp_path, database, kafka, handler, transient_retry_budget_s=0.2, transient_backoff_max_s=0.02
    )
    try:
        for pid in ("PLC-A", "PLC-T", "PLC-B"):
            await kafka.send(topic, new_event(sample_placement(pid, commissioner=ods), source=partner_source(ods)))

        async def rewound_more_than_once() -> bool:
            return handler.calls >= 10

        assert await eventually(rewound_more_than_once, timeout=60)
        assert "PLC-T" not in await _seen(database)
        handler.left = 0  # the contention ends

        async def all_seen() -> bool:
            return await _seen(database) == ["PLC-A", "PLC-B", "PLC-T"]

        assert await eventually(all_seen, timeout=60)
        assert kafka.topics.dlq("placements") not in await _outbox_topics(database)
    finally:
        await runtime.stop()


async def test_a_running_service_logs_only_json_lines_the_kafka_consumers_included(
    tmp_path: Path, database: str, kafka: KafkaProbe
) -> None:
    """FastStream's per-batch lines used to go to a coloured stdout handler of its own,
    escaping the JSON format, the redaction and the repeat filter."""
    import io
    import json
    import logging

    from homeward.kit.logging import configure_logging

    configure_logging("placements", "INFO", "json")
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream  # type: ignore[attr-defined]
    ods = new_ods()
    await kafka.create(partners=[ods])
    runtime = await _start(tmp_path, database, kafka, Flaky("40001", times=0))
    try:
        await kafka.send(
            kafka.topics.partner(ods),
            new_event(sample_placement("PLC-A", commissioner=ods), source=partner_source(ods)),
        )

        async def seen() -> bool:
            return await _seen(database) == ["PLC-A"]

        assert await eventually(seen, timeout=60)
    finally:
        await runtime.stop()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # every line is JSON
    assert any(line["logger"] == "homeward.faststream" for line in lines)


async def test_scheduled_jobs_can_be_held_until_asked_for(tmp_path: Path, database: str, kafka: KafkaProbe) -> None:
    """scheduler_first_run_after_s: a restarted service does not run its "as of" jobs at once
    (the fault campaign restarts services half-way through a replayed history)."""
    from homeward.kit.service import Job

    runs: list[str] = []

    async def job(pool: Any, clock: Any) -> int:
        runs.append("ran")
        return 0

    async def started_with(delay: float) -> list[str]:
        runs.clear()
        (tmp_path / "0001_seen.sql").write_text("CREATE TABLE IF NOT EXISTS seen (event_id text);")
        settings = ServiceSettings(
            database_url=database,
            http_port=0,
            scheduler_first_run_after_s=delay,
            kafka=kafka.settings,
        )
        runtime = ServiceRuntime(
            ServiceDefinition(
                name="placements",
                settings=settings,
                migrations=tmp_path,
                handlers={PlacementMade: Flaky("40001", times=0)},
                subscriptions=[Subscription(partners=True)],
                jobs=[Job("probe", job)],
            ),
            clock=FixedClock(dt.date(2026, 1, 6)),
        )
        await runtime.start()
        try:

            async def ran() -> bool:
                return bool(runs)

            await eventually(ran, timeout=5)  # without the hold, the job runs at start
            held = list(runs)
            await runtime.run_jobs_once()  # asked for: it runs
            return [*held, "asked", *runs[len(held) :]]
        finally:
            await runtime.stop()

    await kafka.create()
    assert await started_with(0) == ["ran", "asked", "ran"]
    assert await started_with(3600) == ["asked", "ran"]
