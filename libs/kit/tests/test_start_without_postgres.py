"""A service started while PostgreSQL is away refuses to start with one line naming it ("cannot
start: cannot reach PostgreSQL"), as it does for Kafka, and its supervisor starts it again;
the fault campaign met a traceback instead (a service restarted during a PostgreSQL restart)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from homeward.contracts.events import PlacementMade
from homeward.kit.clock import FixedClock
from homeward.kit.service import ServiceDefinition, ServiceRuntime, StartupError, Subscription
from homeward.kit.settings import ServiceSettings
from homeward.testing import KafkaProbe, free_port


async def _ignore(*_: object) -> None:
    return None


async def test_postgresql_away_at_start_is_a_startup_refusal_without_the_password(
    tmp_path: Path, kafka: KafkaProbe
) -> None:
    await kafka.create()
    (tmp_path / "0001_seen.sql").write_text("CREATE TABLE seen (id text);")
    closed = free_port()  # nothing listens there
    runtime = ServiceRuntime(
        ServiceDefinition(
            name="placements",
            settings=ServiceSettings(
                database_url=f"postgresql://homeward_placements:s3cret-pw@127.0.0.1:{closed}/homeward_placements",
                http_port=0,
                kafka=kafka.settings,
            ),
            migrations=tmp_path,
            handlers={PlacementMade: _ignore},
            subscriptions=[Subscription(partners=True)],
        ),
        clock=FixedClock(dt.date(2026, 1, 6)),
    )
    with pytest.raises(StartupError, match="cannot reach PostgreSQL") as refused:
        await runtime.start()
    assert "s3cret-pw" not in str(refused.value)
