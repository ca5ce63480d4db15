"""Portable types and upsert on every backend, through the real migration tree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.config import DbSettings
from shared.db import Database, migrate, upsert
from tests.integration.db_schema import MIGRATIONS, VERSION_TABLE, items


@pytest.fixture
async def db(backend: DbSettings):
    await migrate(backend, MIGRATIONS, VERSION_TABLE)
    database = await Database.connect(backend)
    try:
        yield database
    finally:
        await database.close()


async def _row(db: Database, key: str) -> Any:
    async def read(conn: AsyncConnection) -> Any:
        return (await conn.execute(sa.select(items).where(items.c.id == key))).one()

    return await db.run("read_item", read)


async def test_large_binary_and_text_round_trip(db: Database) -> None:
    blob = bytes(range(256)) * 800  # 200 KiB: over MySQL's 64 KiB BLOB/TEXT cap
    state = json.dumps({"chain": "a\u0000b", "emoji": "\U0001f600", "pad": "x" * 100_000})
    assert "\\u0000" in state
    when = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=timezone(timedelta(hours=2)))

    async def write(conn: AsyncConnection) -> None:
        await conn.execute(sa.insert(items).values(id="k", data=blob, body=state, at=when))

    await db.run("write_item", write)
    row = await _row(db, "k")
    assert bytes(row.data) == blob
    assert row.body == state
    assert json.loads(row.body)["chain"] == "a\u0000b"
    assert row.at == when
    assert row.at.tzinfo is UTC
    assert row.at.hour == 10


async def test_naive_datetime_refused(db: Database) -> None:
    async def write(conn: AsyncConnection) -> None:
        await conn.execute(sa.insert(items).values(id="n", at=datetime(2026, 1, 1)))

    with pytest.raises(StatementError, match="timezone-aware"):
        await db.run("write_naive", write)


async def test_upsert_inserts_then_updates(db: Database) -> None:
    async def put(counter: int, body: str) -> None:
        async def txn(conn: AsyncConnection) -> None:
            await upsert(conn, items, {"id": "u", "counter": counter, "body": body}, key=["id"], update=["counter"])

        await db.run("upsert_item", txn)

    await put(1, "first")
    row = await _row(db, "u")
    assert (row.counter, row.body) == (1, "first")
    await put(2, "second")
    row = await _row(db, "u")
    assert (row.counter, row.body) == (2, "first")  # only `update` columns change


async def test_upsert_without_update_keeps_existing_row(db: Database) -> None:
    for counter in (5, 6):

        async def txn(conn: AsyncConnection, counter: int = counter) -> None:
            await upsert(conn, items, {"id": "d", "counter": counter}, key=["id"], update=[])

        await db.run("upsert_nothing", txn)
    assert (await _row(db, "d")).counter == 5
