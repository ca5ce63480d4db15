"""Database.connect and Database.run on every backend, including real lock conflicts."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.config import DbEngine, DbSettings
from shared.db import Database, migrate
from shared.db import engine as engine_mod
from tests.integration.db_schema import MIGRATIONS, VERSION_TABLE, pairs


@pytest.fixture
async def db(backend: DbSettings):
    await migrate(backend, MIGRATIONS, VERSION_TABLE)
    database = await Database.connect(backend)
    try:
        yield database
    finally:
        await database.close()


async def _one(conn: AsyncConnection) -> Any:
    return await conn.scalar(sa.text("SELECT 1"))


async def test_connect_creates_database_and_is_idempotent(backend: DbSettings) -> None:
    for _ in range(2):
        db = await Database.connect(backend)
        try:
            assert await db.run("ping", _one) == 1
        finally:
            await db.close()


async def test_sqlite_pragmas(backend: DbSettings) -> None:
    if backend.engine is not DbEngine.SQLITE:
        pytest.skip("SQLite only")
    db = await Database.connect(backend)
    try:

        async def pragmas(conn: AsyncConnection) -> tuple[Any, ...]:
            names = ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            return tuple([await conn.scalar(sa.text(f"PRAGMA {n}")) for n in names])

        assert await db.run("pragmas", pragmas) == ("wal", 30000, 1, 1)
    finally:
        await db.close()


def _retryable_error() -> OperationalError:
    return OperationalError("UPDATE x", {}, Exception(1213, "Deadlock found when trying to get lock"))


async def test_run_retries_a_retryable_error_once(db: Database) -> None:
    calls = 0

    async def flaky(conn: AsyncConnection) -> str:
        nonlocal calls
        calls += 1
        await conn.execute(sa.insert(pairs).values(id=calls, v=calls))
        if calls == 1:
            raise _retryable_error()
        return "done"

    assert await db.run("flaky", flaky) == "done"
    assert calls == 2
    ids = await db.run("ids", lambda c: _scalars(c, sa.select(pairs.c.id)))
    assert ids == [2]  # the first attempt was rolled back
    assert db.stats()["flaky"] == pytest.approx(
        {"count": 1, "retries": 1, "failures": 0, "total_s": pytest.approx(0, abs=5)}
    )


async def test_run_gives_up_after_bounded_attempts(db: Database) -> None:
    calls = 0

    async def always(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        raise _retryable_error()

    with pytest.raises(OperationalError):
        await db.run("always", always)
    assert calls == engine_mod.MAX_ATTEMPTS
    assert db.stats()["always"]["failures"] == 1


async def test_run_does_not_retry_other_errors(db: Database) -> None:
    calls = 0

    async def broken(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute(sa.text("SELECT * FROM no_such_table"))

    with pytest.raises(sa.exc.DBAPIError):
        await db.run("broken", broken)
    assert calls == 1


async def _scalars(conn: AsyncConnection, stmt: Any) -> list[Any]:
    return list((await conn.execute(stmt)).scalars())


async def test_run_survives_a_real_deadlock(db: Database, backend: DbSettings) -> None:
    if backend.engine is DbEngine.SQLITE:
        pytest.skip("BEGIN IMMEDIATE makes SQLite deadlock-free; see the lock test")

    async def seed(conn: AsyncConnection) -> None:
        await conn.execute(sa.insert(pairs), [{"id": 1, "v": 0}, {"id": 2, "v": 0}])

    await db.run("seed", seed)
    first_locked = {1: asyncio.Event(), 2: asyncio.Event()}

    def crosser(first: int, second: int):
        async def txn(conn: AsyncConnection) -> None:
            await conn.execute(sa.update(pairs).where(pairs.c.id == first).values(v=pairs.c.v + 1))
            first_locked[first].set()
            await asyncio.wait_for(first_locked[second].wait(), 10)
            await conn.execute(sa.update(pairs).where(pairs.c.id == second).values(v=pairs.c.v + 1))

        return txn

    await asyncio.wait_for(asyncio.gather(db.run("cross_a", crosser(1, 2)), db.run("cross_b", crosser(2, 1))), 60)
    stats = db.stats()
    assert stats["cross_a"]["retries"] + stats["cross_b"]["retries"] >= 1
    assert await db.run("read", lambda c: _scalars(c, sa.select(pairs.c.v).order_by(pairs.c.id))) == [2, 2]


async def test_sqlite_retries_database_is_locked(db: Database, backend: DbSettings, monkeypatch) -> None:
    if backend.engine is not DbEngine.SQLITE:
        pytest.skip("SQLite only")
    monkeypatch.setattr(engine_mod, "BACKOFF_BASE_S", 0.1)
    await db.engine.dispose()  # new connections get the short busy timeout below

    @event.listens_for(db.engine.sync_engine, "connect")
    def short_busy(dbapi_connection: Any, _record: Any) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA busy_timeout = 100")
        cur.close()

    holder = sqlite3.connect(backend.sqlite_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    asyncio.get_running_loop().call_later(0.4, holder.commit)
    try:

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(sa.insert(pairs).values(id=7, v=7))

        await db.run("locked_write", write)
    finally:
        holder.close()
    assert db.stats()["locked_write"]["retries"] >= 1
    assert await db.run("read", lambda c: _scalars(c, sa.select(pairs.c.v))) == [7]


_SLOW_QUERY = {
    DbEngine.SQLITE: "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000000) "
    "SELECT count(*) FROM c",
    DbEngine.MYSQL: "SELECT SLEEP(1.5)",
    DbEngine.PGSQL: "SELECT pg_sleep(1.5)",
}


async def test_cancelled_caller_never_abandons_a_transaction(db: Database, backend: DbSettings) -> None:
    """A caller cancelled while its query runs (a reconnect cancelling a push handler, a shutdown) must not
    leave the transaction open: the next writer gets in at once instead of waiting out a lock timeout."""
    await _create_table(db)

    async def holder(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("INSERT INTO cancel_probe (x) VALUES (1)"))
        await conn.execute(sa.text(_SLOW_QUERY[backend.engine]))

    task = asyncio.ensure_future(db.run("holder", holder))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def writer(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("INSERT INTO cancel_probe (x) VALUES (2)"))

    async with asyncio.timeout(10):  # a lock left behind would hold this for the 30 s busy timeout
        await db.run("writer", writer)
    rows = await db.run("read", lambda conn: conn.scalars(sa.text("SELECT x FROM cancel_probe ORDER BY x")))
    # The started transaction finished (committed) before the cancellation went through; nothing is half-done.
    assert list(rows) == [1, 2]


async def _create_table(db: Database) -> None:
    async def create(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("CREATE TABLE cancel_probe (x INTEGER NOT NULL)"))

    await db.run("create", create)
