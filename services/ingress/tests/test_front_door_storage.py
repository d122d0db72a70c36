"""The front door's tables on a real database: receipts are pruned by age like the inbox."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest
from homeward.ingress.adapters import receipts
from homeward.ingress.entrypoints.app import MIGRATIONS
from homeward.kit.db import migrate

pytestmark = pytest.mark.integration


async def test_old_receipts_are_deleted_in_batches(database: str) -> None:
    await migrate(database, "ingress", MIGRATIONS)
    conn = await asyncpg.connect(database)
    try:
        await conn.executemany(
            """INSERT INTO http_receipts (source, event_id, digest, event_type, ods, received_at)
               VALUES ('urn:nhs:ods:RX1', $1, 'd', 'homeward.PlacementMade.v1', 'RX1', now() - $2::interval)""",
            [(f"old-{i}", dt.timedelta(days=40)) for i in range(5)] + [("new", dt.timedelta(days=1))],
        )
        pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
        try:
            assert await receipts.prune(pool, dt.timedelta(days=35), batch_size=2) == 5
        finally:
            await pool.close()
        assert [r["event_id"] for r in await conn.fetch("SELECT event_id FROM http_receipts")] == ["new"]
    finally:
        await conn.close()
