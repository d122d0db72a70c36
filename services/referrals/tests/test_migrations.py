"""Migration 0003 on the real PostgreSQL: what the service's own parking tables held moves to the
kit's parking lot where it can (withdrawals, as the events they were), and the tables go."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import asyncpg
from homeward.contracts.events import ReferralWithdrawn
from homeward.contracts.vocab import WithdrawalReason
from homeward.kit import parking
from homeward.kit.clock import FixedClock
from homeward.kit.db import create_pool, migrate
from homeward.kit.settings import CommonSettings
from homeward.kit.topics import Topics
from homeward.kit.uow import unit_of_work
from homeward.referrals.entrypoints.app import MIGRATIONS, unit_of_work_factory
from homeward.referrals.handlers import HANDLERS
from homeward.referrals.settings import ReferralsSettings

from .factories import KEY, T0, from_partner, referral

H = dt.timedelta(hours=1)
SETTINGS = ReferralsSettings(common=CommonSettings(patient_ref_key=KEY))  # type: ignore[arg-type]


async def _before_0003(database: str, tmp_path: Path) -> None:
    for old in sorted(MIGRATIONS.glob("000[12]_*.sql")):
        shutil.copy(old, tmp_path / old.name)
    await migrate(database, "referrals", tmp_path)
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            """INSERT INTO parked_withdrawals (referral_id, commissioner, withdrawn_at, reason, event_id, organisation,
                                               parked_at, problem)
               VALUES ('REF-W', 'QWU', $1, 'met_elsewhere', 'evt-w1', 'QWU', $2, NULL),
                      ('REF-X', 'QWU', $1, 'no_longer_needed', 'evt-w2', 'RYG', $2, 'referral REF-X belongs to QHM')""",
            T0 + 2 * H,
            T0 + 3 * H,
        )
        await conn.execute(
            """INSERT INTO parked_placements (referral_id, placement_id, placement)
               VALUES ('REF-P', 'PLC-1', '{"placement_id": "PLC-1"}'::jsonb)"""
        )
    finally:
        await conn.close()


async def test_parked_withdrawals_become_parked_events_and_apply_when_their_referral_arrives(
    database: str, tmp_path: Path
) -> None:
    await _before_0003(database, tmp_path)
    applied = await migrate(database, "referrals", MIGRATIONS)
    assert [m.name for m in applied] == ["parking_lot"]

    pool = await create_pool(database)
    try:
        async with pool.acquire() as conn:
            entries, _ = await parking.listing(conn, statuses=parking.STATUSES)
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE tablename IN ('parked_placements', 'parked_withdrawals')"
            )
        assert tables == []
        by_id = {e.event_id: e for e in entries}
        assert sorted(by_id) == ["evt-w1", "evt-w2"], "placements cannot be carried; withdrawals are"
        waiting, refused = by_id["evt-w1"], by_id["evt-w2"]
        assert (waiting.status, waiting.awaiting, waiting.reason) == ("parked", "referral:REF-W", "referral-unknown")
        assert waiting.expires_at == T0 + 3 * H + dt.timedelta(days=30)
        assert (refused.status, refused.resolution) == ("rejected", "not-party: referral REF-X belongs to QHM")
        # Each is the event it was, as the contracts read it again.
        event = waiting.event()
        assert isinstance(event.data, ReferralWithdrawn)
        assert (event.id, event.organisation, event.time) == ("evt-w1", "QWU", T0 + 2 * H)
        assert (event.data.referral_id, event.data.withdrawn_at, event.data.reason) == (
            "REF-W",
            T0 + 2 * H,
            WithdrawalReason.MET_ELSEWHERE,
        )

        # The referral arrives: the carried withdrawal applies, as a parked one did before.
        factory = unit_of_work_factory(SETTINGS)
        table: dict[str, Any] = {payload.event_type(): h for payload, h in HANDLERS.items()}
        arriving = from_partner(referral("REF-W", "QWU", urgency="emergency"), "QWU", time=T0)
        async with unit_of_work(pool, factory, "referrals", FixedClock(T0), topics=Topics(), handlers=table) as uow:
            uow.cause = arriving
            await table[arriving.type](arriving, uow)
        async with pool.acquire() as conn:
            withdrawn_at = await conn.fetchval("SELECT withdrawn_at FROM referrals WHERE referral_id = 'REF-W'")
            status = await conn.fetchval("SELECT status FROM parking_lot WHERE event_id = 'evt-w1'")
        assert (withdrawn_at, status) == (T0 + 2 * H, "applied")
    finally:
        await pool.close()
