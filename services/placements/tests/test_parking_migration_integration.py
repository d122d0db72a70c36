"""Migration 0005 against the real PostgreSQL: the events parked_events kept are carried into
the kit's parking lot whole, waiting for the same placement, and behave there as any other."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import asyncpg
from homeward.kit import parking
from homeward.kit.clock import FixedClock
from homeward.kit.crypto import NhsNumberCipher
from homeward.kit.db import create_pool, migrate
from homeward.kit.pseudonym import Pseudonymiser
from homeward.kit.topics import Topics
from homeward.placements.adapters.patients import PatientKeys
from homeward.placements.entrypoints.app import MIGRATIONS
from placements_support import FAR_PROVIDER, KEY, NHS_B, Register, at, event, handle_in_postgres, placement_made, review

TOPICS = Topics("parkmig.")
KEYS = PatientKeys(Pseudonymiser(KEY), NhsNumberCipher("test-nhs-number-key-" + "y" * 32))
NOW = at("2026-03-01")


async def _park_the_old_way(conn: asyncpg.Connection, e: Any, status: str, parked_at: dt.datetime) -> None:  # type: ignore[type-arg]
    resolved = status in ("applied", "rejected")
    await conn.execute(
        """INSERT INTO parked_events (event_id, placement_id, event_type, event_time, organisation, event, reason,
               parked_at, status, expired_at, resolved_at, resolution)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'placement-unknown', $7, $8, $9, $10, $11)""",
        e.id,
        e.data.placement_id,
        e.type,
        e.time,
        e.organisation,
        json.dumps(e.to_dict()),
        parked_at,
        status,
        parked_at + dt.timedelta(days=30) if status == "expired" else None,
        parked_at + dt.timedelta(days=1) if resolved else None,
        f"{status} long ago" if resolved else None,
    )


async def test_parked_events_move_to_the_kits_parking_lot_and_still_wait_for_their_placement(
    database: str, tmp_path: Path
) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for sql in sorted(MIGRATIONS.glob("000[1-4]_*.sql")):
        shutil.copy(sql, before)
    await migrate(database, "placements", before)

    waiting = event(review("PLC-A", "oversight_visit", "2026-02-20"), org=FAR_PROVIDER, time=at("2026-02-20"))
    applied = event(review("PLC-A", "ctr", "2026-02-10"), org=FAR_PROVIDER, time=at("2026-02-10"))
    stale = event(review("PLC-B", "oversight_visit", "2026-01-10"), org=FAR_PROVIDER, time=at("2026-01-10"))
    refused = event(review("PLC-B", "ctr", "2026-01-11"), org=FAR_PROVIDER, time=at("2026-01-11"))
    conn = await asyncpg.connect(database)
    try:
        await _park_the_old_way(conn, waiting, "parked", at("2026-02-20"))
        await _park_the_old_way(conn, applied, "applied", at("2026-02-10"))
        await _park_the_old_way(conn, stale, "expired", at("2026-01-10"))
        await _park_the_old_way(conn, refused, "rejected", at("2026-01-11"))
    finally:
        await conn.close()

    assert [m.name for m in await migrate(database, "placements", MIGRATIONS)] == ["parking_lot"]

    pool = await create_pool(database, 1, 3)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass('parked_events')") is None
            lot = {p.event_id: p for p in (await parking.listing(conn, statuses=parking.STATUSES))[0]}
        assert {i: (p.awaiting, p.status, p.resolution) for i, p in lot.items()} == {
            waiting.id: ("placement:PLC-A", "parked", None),
            applied.id: ("placement:PLC-A", "applied", "applied long ago"),
            stale.id: ("placement:PLC-B", "parked", None),  # only marked before: it had not ended
            refused.id: ("placement:PLC-B", "rejected", "rejected long ago"),
        }
        assert lot[waiting.id].event() == waiting  # the whole event, as it came
        assert lot[waiting.id].expires_at == at("2026-02-20") + dt.timedelta(days=30)

        # The kit's expiry dead-letters the one parked over 30 days ago; the other still waits.
        clock = FixedClock(NOW.date())
        expired = await parking.expire(pool, service="placements", clock=clock, topics=TOPICS, dead_letter_key=None)
        assert expired == 1
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT status FROM parking_lot WHERE event_id = $1", stale.id) == "expired"
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", TOPICS.dlq("placements")) == 1

        # When PLC-A is stated, the review that waited for it is applied.
        made = event(placement_made("PLC-A", nhs=NHS_B, start="2026-01-05"), time=at("2026-03-01"))
        await handle_in_postgres(pool, Register().config, KEYS, made, clock, topics=TOPICS)
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT status FROM parking_lot WHERE event_id = $1", waiting.id) == "applied"
            reviews = await conn.fetch("SELECT review_type, review_date FROM reviews WHERE placement_id = 'PLC-A'")
        assert [tuple(r) for r in reviews] == [("oversight_visit", dt.date(2026, 2, 20))]
    finally:
        await pool.close()
