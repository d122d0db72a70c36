"""`homeward partner key ...` on a real ingress database: keys are printed once, stored as
digests, listed without secrets, rotated (at once or after a grace window) and revoked."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from homeward.ingress.adapters import keys
from homeward.ingress.entrypoints.app import MIGRATIONS
from homeward.kit.db import migrate
from typer.testing import CliRunner

from homeward.cli.main import app

pytestmark = pytest.mark.integration


async def cli(database: str, *args: str) -> Any:
    """Run the CLI as a person would (it runs its own event loop, so in a thread)."""
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, app, ["partner", "key", *args], env={"HOMEWARD_INGRESS_DATABASE_URL": database}
    )


async def speaks_for(database: str, key: str) -> str | None:
    conn = await asyncpg.connect(database)
    try:
        return await keys.organisation_of(conn, key)
    finally:
        await conn.close()


async def test_keys_are_added_listed_rotated_and_revoked(database: str) -> None:
    before = await cli(database, "add", "RX1")
    assert before.exit_code == 2 and "partner_api_keys" in before.output  # the ingress never ran there
    await migrate(database, "ingress", MIGRATIONS)

    added = await cli(database, "add", "rx1")
    assert added.exit_code == 0, added.output
    first = added.stdout.strip().splitlines()[-1]
    assert first.startswith("hwk_") and await speaks_for(database, first) == "RX1"
    second = json.loads((await cli(database, "add", "RX1", "--json")).stdout)
    other = json.loads((await cli(database, "add", "RX2", "--json")).stdout)
    assert await speaks_for(database, second["key"]) == "RX1" and second["key_id"] in second["key"]

    listed = await cli(database, "list")
    assert listed.exit_code == 0 and first.split("_")[1] in listed.stdout and "RX2" in listed.stdout
    assert first not in listed.stdout and second["key"] not in listed.stdout  # never a secret
    conn = await asyncpg.connect(database)
    try:  # ...nor stored
        stored = json.dumps([dict(r) for r in await conn.fetch("SELECT * FROM partner_api_keys")], default=str)
    finally:
        await conn.close()
    assert first not in stored and first.split("_", 2)[2] not in stored

    # Rotating with a grace window: the new key works, and so do the old ones, until then.
    rotated = json.loads((await cli(database, "rotate", "RX1", "--grace", "1h", "--json")).stdout)
    assert sorted(rotated["revoking"]) == sorted([first.split("_")[1], second["key_id"]])
    assert rotated["grace_seconds"] == 3600
    for key in (first, second["key"], rotated["key"]):
        assert await speaks_for(database, key) == "RX1"
    states = json.loads((await cli(database, "list", "RX1", "--json")).stdout)["keys"]
    assert sum(1 for k in states if k["revoked_at"] is not None and k["active"]) == 2
    assert "active until" in (await cli(database, "list", "RX1")).stdout

    # Rotating at once: only the newest works; RX2's key is untouched.
    again = await cli(database, "rotate", "RX1")
    assert again.exit_code == 0, again.output
    newest = again.stdout.strip().splitlines()[-1]
    assert await speaks_for(database, newest) == "RX1"
    for key in (first, second["key"], rotated["key"]):
        assert await speaks_for(database, key) is None
    assert await speaks_for(database, other["key"]) == "RX2"

    # Revoking: one key by id, then all of a partner's; nothing left to revoke is exit 1.
    revoked = await cli(database, "revoke", "RX2", "--key-id", other["key_id"], "--json")
    assert json.loads(revoked.stdout)["revoked"] == [other["key_id"]]
    assert await speaks_for(database, other["key"]) is None
    assert (await cli(database, "revoke", "RX1")).exit_code == 0
    assert await speaks_for(database, newest) is None
    assert (await cli(database, "revoke", "RX1")).exit_code == 1
    assert (await cli(database, "add", "not an ods")).exit_code == 2
