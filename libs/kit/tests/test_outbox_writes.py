"""Writing to the outbox, on the real PostgreSQL: the NOTIFY trigger and add_many."""

import asyncio
import random

import asyncpg
from homeward.kit import outbox
from homeward.kit.db import migrate
from homeward.kit.outbox import OutboxRow


async def _connect(database: str) -> asyncpg.Connection:  # type: ignore[type-arg]
    await migrate(database, "test", None)
    return await asyncpg.connect(database)


async def test_the_trigger_notifies_once_per_statement_and_writers_make_no_call_of_their_own(database: str) -> None:
    writer = await _connect(database)
    listener = await asyncpg.connect(database)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(outbox.CHANNEL, lambda _c, _pid, _channel, payload: heard.put_nowait(payload))
    statements: list[str] = []
    writer.add_query_logger(lambda q: statements.append(q.query))
    try:
        rows = [OutboxRow("t", b"k", f"v{i}".encode(), event_id=f"e-{i}") for i in range(3)]
        async with writer.transaction():
            assert await outbox.add_many(writer, rows) == [True, True, True]
        async with writer.transaction():  # all queued already: the statement adds nothing, says nothing
            assert await outbox.add_many(writer, rows) == [False, False, False]
        statements.clear()
        async with writer.transaction():
            assert await outbox.add_raw(writer, "t", b"k", b"last", event_id="e-last")
        await asyncio.sleep(0)  # asyncpg calls query loggers soon after, not during, the query
        writes = [s for s in statements if "outbox" in s]
        assert len(writes) == 1 and "INSERT INTO outbox" in writes[0]
        assert not [s for s in statements if "pg_notify" in s]

        # Notifications arrive in commit order: everything before the last one has arrived by then.
        received = [await asyncio.wait_for(heard.get(), 30)]
        while received[-1] != "1":
            received.append(await asyncio.wait_for(heard.get(), 30))
        assert received == ["3", "1"]  # one per statement that added rows, saying how many
    finally:
        await writer.close()
        await listener.close()


async def test_add_many_skips_ids_already_queued_or_repeated_and_keeps_the_given_order(database: str) -> None:
    conn = await _connect(database)
    try:
        await outbox.add_raw(conn, "t", b"k", b"before", event_id="e-2")
        rows = [
            OutboxRow("t", b"k", b"first", event_id="e-5"),
            OutboxRow("t", b"k", b"queued before", event_id="e-2"),
            OutboxRow("t", None, b"second", (("h", b"\x01\xff"),), event_id="e-1", event_type="T"),
            OutboxRow("t", b"k", b"third"),  # no event id: never a duplicate
            OutboxRow("t", b"k", b"repeat in this call", event_id="e-5"),
            OutboxRow("other", b"k", b"fourth", event_id="e-2"),  # ids are unique per topic
        ]
        assert await outbox.add_many(conn, rows) == [True, False, True, True, False, True]
        queued = await conn.fetch("SELECT value, key, headers, event_type FROM outbox ORDER BY id")
        assert [bytes(r["value"]) for r in queued] == [b"before", b"first", b"second", b"third", b"fourth"]
        second = queued[2]
        assert second["key"] is None and second["event_type"] == "T"
        assert outbox.decode_headers(second["headers"]) == [("h", b"\x01\xff")]
        assert await outbox.add_many(conn, []) == []
    finally:
        await conn.close()


async def test_add_many_gives_ten_thousand_rows_ascending_ids_in_the_given_order(database: str) -> None:
    conn = await _connect(database)
    try:
        numbers = list(range(10_000))
        random.Random(7).shuffle(numbers)  # event ids in no particular order: ids follow the list, not them
        rows = [OutboxRow("t", b"k", str(n).encode(), event_id=f"e-{n}") for n in numbers]
        async with conn.transaction():
            assert all(await outbox.add_many(conn, rows))
        stored = await conn.fetch("SELECT value FROM outbox ORDER BY id")
        assert [int(bytes(r["value"])) for r in stored] == numbers
    finally:
        await conn.close()
