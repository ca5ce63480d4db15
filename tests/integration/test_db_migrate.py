"""Migrations on every backend: fresh database, idempotence, concurrency (tasks and processes)."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.config import DbSettings
from shared.db import Database, MigrationLockTimeout, migrate
from shared.db.migrate import alembic_config
from tests.integration.db_schema import MIGRATIONS, VERSION_TABLE
from tests.support.services import db_env

REPO = Path(__file__).resolve().parents[2]
# The package re-exports the function `migrate`, which shadows the submodule attribute.
migrate_mod = importlib.import_module("shared.db.migrate")


async def _state(settings: DbSettings) -> tuple[set[str], list[str]]:
    db = await Database.connect(settings)
    try:

        async def read(conn: AsyncConnection) -> tuple[set[str], list[str]]:
            tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            versions = list((await conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalars())
            return tables, versions

        return await db.run("read_state", read)
    finally:
        await db.close()


async def test_migrate_fresh_database_uses_own_version_table(backend: DbSettings) -> None:
    await migrate(backend, MIGRATIONS, VERSION_TABLE)
    tables, versions = await _state(backend)
    assert {"items", "pairs", VERSION_TABLE} <= tables
    assert "alembic_version" not in tables
    assert versions == ["0001"]


async def test_migrate_twice_is_a_no_op(backend: DbSettings) -> None:
    await migrate(backend, MIGRATIONS, VERSION_TABLE)
    await migrate(backend, MIGRATIONS, VERSION_TABLE)
    assert (await _state(backend))[1] == ["0001"]


async def test_migrate_concurrent_tasks(backend: DbSettings) -> None:
    await asyncio.gather(*(migrate(backend, MIGRATIONS, VERSION_TABLE) for _ in range(3)))
    assert (await _state(backend))[1] == ["0001"]


async def test_migrate_concurrent_processes(backend: DbSettings) -> None:
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from shared.config import load_settings\n"
        "from shared.db import migrate\n"
        "asyncio.run(migrate(load_settings().db, Path(sys.argv[1]), sys.argv[2]))\n"
    )
    env = {**os.environ, **db_env(backend), "PYTHONPATH": str(REPO)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            str(MIGRATIONS),
            VERSION_TABLE,
            cwd=REPO,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
    assert (await _state(backend))[1] == ["0001"]


def test_env_refuses_to_run_without_migrate() -> None:
    cfg = alembic_config(MIGRATIONS, None, VERSION_TABLE)
    with pytest.raises(RuntimeError, match="migrate"):
        command.upgrade(cfg, "head")


async def test_migrate_waits_for_the_lock_and_gives_up(backend: DbSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrate_mod, "LOCK_TIMEOUT_S", 1)
    db = await Database.connect(backend)
    try:
        async with migrate_mod._migration_lock(db):  # another "node" holds the lock
            with pytest.raises(MigrationLockTimeout):
                await migrate(backend, MIGRATIONS, VERSION_TABLE)
        await migrate(backend, MIGRATIONS, VERSION_TABLE)  # released: now it runs
    finally:
        await db.close()
    assert (await _state(backend))[1] == ["0001"]
