"""Liveness without ``pool_pre_ping``: a pooled connection the server dropped costs one retry, not an error;
no reset-on-return ``ROLLBACK``, so an ``engine.connect()`` that never commits must still leave nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from shared.config import DbEngine, DbSettings
from shared.db import Database, migrate
from shared.db.engine import server_url
from tests.integration.db_schema import MIGRATIONS, VERSION_TABLE, pairs


@pytest.fixture
async def db(backend: DbSettings):
    await migrate(backend, MIGRATIONS, VERSION_TABLE)
    database = await Database.connect(backend)
    try:
        yield database
    finally:
        await database.close()


def _server_only(backend: DbSettings) -> None:
    if backend.engine is DbEngine.SQLITE:
        pytest.skip("no server connection to kill")


async def _connection_id(conn: AsyncConnection) -> int:
    dialect = conn.dialect.name
    query = "SELECT CONNECTION_ID()" if dialect in ("mysql", "mariadb") else "SELECT pg_backend_pid()"
    return int(await conn.scalar(sa.text(query)))


async def _kill(backend: DbSettings, connection_id: int) -> None:
    """End a server connection from another one, as a server restart or an idle timeout would."""
    admin = create_async_engine(server_url(backend), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            if backend.engine is DbEngine.MYSQL:
                await conn.execute(sa.text(f"KILL {connection_id}"))
            else:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": connection_id})
    finally:
        await admin.dispose()


async def test_a_killed_pooled_connection_costs_one_retry(db: Database, backend: DbSettings) -> None:
    _server_only(backend)
    first = await db.run("whoami", _connection_id)
    await _kill(backend, first)

    calls = 0

    async def insert(conn: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        await conn.execute(sa.insert(pairs).values(id=1, v=1))
        return await _connection_id(conn)

    second = await db.run("after_kill", insert)
    assert second != first
    assert calls == 2  # the first attempt died on the dead connection, before its COMMIT
    assert db.stats()["after_kill"]["retries"] == 1
    assert await db.run("count", lambda c: c.scalar(sa.select(sa.func.count()).select_from(pairs))) == 1


async def test_a_connection_lost_at_commit_is_not_retried(db: Database, backend: DbSettings) -> None:
    """COMMIT may have been applied when the connection drops under it: running ``fn`` again could apply it twice."""
    _server_only(backend)
    calls = 0

    async def killed_before_commit(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute(sa.insert(pairs).values(id=calls, v=1))
        await _kill(backend, await _connection_id(conn))

    with pytest.raises(sa.exc.DBAPIError) as caught:
        await db.run("lost_at_commit", killed_before_commit)
    assert caught.value.connection_invalidated
    assert calls == 1
    assert await db.run("alive", lambda c: c.scalar(sa.text("SELECT 1"))) == 1


async def test_connect_without_commit_leaves_nothing_behind(db: Database) -> None:
    """Tests and tools use ``engine.connect()`` directly; without the pool's reset ``Connection.close()`` still
    rolls back, so the next checkout starts clean (no open transaction, no lingering row locks)."""
    async with db.engine.connect() as conn:
        await conn.execute(sa.insert(pairs).values(id=7, v=7))
    for _ in range(3):  # every pooled connection, whichever the next checkout gets

        async def rows(conn: AsyncConnection) -> list[Any]:
            return list((await conn.execute(sa.select(pairs.c.id))).scalars())

        assert await db.run("rows", rows) == []
    await db.run("insert", lambda c: c.execute(sa.insert(pairs).values(id=7, v=8)))
    assert await db.run("v", lambda c: c.scalar(sa.select(pairs.c.v).where(pairs.c.id == 7))) == 8
