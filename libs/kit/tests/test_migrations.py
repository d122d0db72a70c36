from pathlib import Path

import asyncpg
import pytest
from homeward.kit.db import MigrationError, migrate


async def test_migrations_apply_once_and_refuse_edited_files(database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY);")
    first = await migrate(database, "svc", tmp_path)
    assert [(m.component, m.version) for m in first] == [
        ("kit", 1),
        ("kit", 2),
        ("kit", 3),
        ("kit", 4),
        ("kit", 5),
        ("kit", 6),
        ("svc", 1),
    ]
    assert await migrate(database, "svc", tmp_path) == []

    (tmp_path / "0002_more.sql").write_text("ALTER TABLE things ADD COLUMN name text;")
    assert [m.version for m in await migrate(database, "svc", tmp_path)] == [2]

    (tmp_path / "0001_things.sql").write_text("CREATE TABLE things (id bigint PRIMARY KEY);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(database, "svc", tmp_path)

    conn = await asyncpg.connect(database)
    try:
        cols = await conn.fetch("SELECT column_name FROM information_schema.columns WHERE table_name='things'")
        assert {c["column_name"] for c in cols} == {"id", "name"}
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_half_applied(database: str, tmp_path: Path) -> None:
    (tmp_path / "0001_bad.sql").write_text("CREATE TABLE ok_table (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.PostgresError):
        await migrate(database, "svc", tmp_path)
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT to_regclass('ok_table')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE component='svc'") == 0
    finally:
        await conn.close()
