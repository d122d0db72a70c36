"""The asyncpg repository's locking against the real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from homeward.kit.consumer import INFRA_ERRORS
from homeward.kit.db import migrate
from homeward.placements.adapters.repository import LockContention, PgPlacementRepository
from homeward.placements.entrypoints.app import MIGRATIONS


async def test_a_deadlock_between_two_batches_makes_the_kit_rewind_a_whole_batch(database: str) -> None:
    await migrate(database, "placements", MIGRATIONS)
    one, two = await asyncpg.connect(database), await asyncpg.connect(database)
    try:
        t1, t2 = one.transaction(), two.transaction()
        await t1.start()
        await t2.start()
        r1 = PgPlacementRepository(one)
        r2 = PgPlacementRepository(two)
        await r1.lock("placement:A")
        await r2.lock("placement:B")
        results = await asyncio.gather(r1.lock("placement:B"), r2.lock("placement:A"), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1
        assert isinstance(failed[0], LockContention)
        assert isinstance(failed[0], INFRA_ERRORS)  # so the kit rolls back and retries the batch
        await t1.rollback()
        await t2.rollback()
    finally:
        await one.close()
        await two.close()


@pytest.mark.parametrize("key", ["placement:PLC-1", "patient:pt_0123"])
async def test_a_lock_is_held_until_the_transaction_ends(database: str, key: str) -> None:
    await migrate(database, "placements", MIGRATIONS)
    one, two = await asyncpg.connect(database), await asyncpg.connect(database)
    try:
        async with one.transaction():
            await PgPlacementRepository(one).lock(key)
            taken = await two.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)
            assert taken is False
        assert await two.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key) is True
    finally:
        await one.close()
        await two.close()
