"""Retention of the kit's tables, on the real PostgreSQL: old published outbox rows and old
inbox rows go, in bounded batches; unpublished, parked and recent rows stay."""

import datetime as dt

import asyncpg
import pytest
from homeward.kit.clock import FixedClock
from homeward.kit.db import create_pool, migrate
from homeward.kit.outbox import prune_inbox, prune_outbox
from homeward.kit.service import ServiceDefinition, ServiceRuntime, retention_job
from homeward.kit.settings import ServiceSettings
from prometheus_client import REGISTRY
from pydantic_settings import SettingsConfigDict

# (value, published so many days ago or None, parked so many days ago or None, created days ago)
OUTBOX = [
    *((f"old-{n}", 8, None, 9) for n in range(5)),  # published 8 days ago: gone
    ("recent", 1, None, 9),  # published yesterday: kept
    ("unpublished", None, None, 30),  # waiting for Kafka, however old: kept
    ("parked", None, 20, 30),  # parked: kept until a person deals with it
]
# (event id, received so many days ago)
INBOX = [*((f"old-{n}", 40) for n in range(3)), ("recent", 10)]


async def _fill(database: str) -> asyncpg.Connection:  # type: ignore[type-arg]
    await migrate(database, "test", None)
    conn = await asyncpg.connect(database)
    for value, published, parked, created in OUTBOX:
        await conn.execute(
            """INSERT INTO outbox (topic, value, event_id, created_at, published_at, parked_at)
               VALUES ('t', $1::text::bytea, $1, now() - make_interval(days => $2),
                       now() - make_interval(days => $3), now() - make_interval(days => $4))""",
            value,
            created,
            published,
            parked,
        )
    for event_id, received in INBOX:
        await conn.execute(
            """INSERT INTO inbox (consumer, source, event_id, event_type, received_at)
               VALUES ('svc', 'urn:nhs:ods:X', $1, 'T', now() - make_interval(days => $2))""",
            event_id,
            received,
        )
    return conn


async def _left(conn: asyncpg.Connection) -> tuple[set[str], set[str]]:  # type: ignore[type-arg]
    outbox_rows = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM outbox")}
    inbox_rows = {r["event_id"] for r in await conn.fetch("SELECT event_id FROM inbox")}
    return outbox_rows, inbox_rows


async def test_pruning_deletes_old_published_and_old_inbox_rows_in_bounded_batches(database: str) -> None:
    conn = await _fill(database)
    pool = await create_pool(database)
    try:
        assert await prune_outbox(pool, dt.timedelta(days=7), batch_size=2, max_batches=2) == 4  # bounded: 2 x 2
        assert await prune_outbox(pool, dt.timedelta(days=7), batch_size=2) == 1
        assert await prune_outbox(pool, dt.timedelta(days=7), batch_size=2) == 0
        assert await prune_inbox(pool, dt.timedelta(days=35), batch_size=2) == 3
        outbox_rows, inbox_rows = await _left(conn)
        assert outbox_rows == {"recent", "unpublished", "parked"}
        assert inbox_rows == {"recent"}
    finally:
        await pool.close()
        await conn.close()


async def test_the_retention_job_uses_the_settings_windows_and_counts_what_it_deleted(database: str) -> None:
    conn = await _fill(database)
    pool = await create_pool(database)
    service = "retained"
    before = {
        t: REGISTRY.get_sample_value("homeward_retention_deleted_total", {"service": service, "table": t}) or 0
        for t in ("outbox", "inbox")
    }
    try:
        # The defaults: 7 days for the outbox, 35 for the inbox. The service's clock plays no
        # part (it may run "as of" another day): ages are the database's.
        job = retention_job(service, ServiceSettings(retention_batch_size=2))
        assert job.name == "retention"
        assert await job.run(pool, FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))) == 0
        outbox_rows, inbox_rows = await _left(conn)
        assert outbox_rows == {"recent", "unpublished", "parked"} and inbox_rows == {"recent"}
        after = {
            t: REGISTRY.get_sample_value("homeward_retention_deleted_total", {"service": service, "table": t})
            for t in ("outbox", "inbox")
        }
        assert (after["outbox"] - before["outbox"], after["inbox"] - before["inbox"]) == (5, 3)  # type: ignore[operator]

        # Shorter windows reach the recent rows; 0 keeps everything.
        await retention_job(service, ServiceSettings(outbox_retention_days=0.5, inbox_retention_days=0)).run(
            pool, FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        )
        outbox_rows, inbox_rows = await _left(conn)
        assert outbox_rows == {"unpublished", "parked"} and inbox_rows == {"recent"}
    finally:
        await pool.close()
        await conn.close()


def test_every_service_runs_retention_with_windows_from_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    class PlacementsSettings(ServiceSettings):
        model_config = SettingsConfigDict(env_prefix="HOMEWARD_PLACEMENTS_", extra="ignore")

    monkeypatch.setenv("HOMEWARD_PLACEMENTS_OUTBOX_RETENTION_DAYS", "3")
    monkeypatch.setenv("HOMEWARD_PLACEMENTS_INBOX_RETENTION_DAYS", "60")
    monkeypatch.setenv("HOMEWARD_PLACEMENTS_RETENTION_BATCH_SIZE", "500")
    settings = PlacementsSettings()
    assert (settings.outbox_retention_days, settings.inbox_retention_days, settings.retention_batch_size) == (
        3,
        60,
        500,
    )
    defaults = ServiceSettings()
    assert (defaults.outbox_retention_days, defaults.inbox_retention_days, defaults.retention_batch_size) == (
        7,
        35,
        10_000,
    )

    runtime = ServiceRuntime(ServiceDefinition(name="placements", settings=settings, migrations=None))
    assert [job.name for job in runtime.kit_jobs] == ["retention", "parking-expiry"]
    assert runtime.kit_jobs[0].interval_s == settings.retention_interval_s
