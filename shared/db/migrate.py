"""Alembic migrations, run programmatically under a cross-process lock.

webapp and coreapp share one database but each owns an Alembic tree and a version table
(contracts §2).  Several nodes may start at once, so ``migrate`` serialises them: MySQL ``GET_LOCK``,
PostgreSQL ``pg_advisory_lock``, SQLite an ``flock`` on a file next to the database.  There is no
``alembic.ini``: ``migrate`` builds the Alembic config and hands the open connection to the tree's ``env.py``
through ``config.attributes``, and ``env.py`` is just::

    from shared.db.migrate import run_env

    run_env()
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.config import DbEngine, DbSettings
from shared.db.engine import Database

log = logging.getLogger("openprem.db.migrate")

LOCK_TIMEOUT_S = 60
_POLL_S = 0.05


class MigrationLockTimeout(RuntimeError):
    """Another process held the migration lock for longer than ``LOCK_TIMEOUT_S``."""


async def migrate(settings: DbSettings, script_location: Path, version_table: str) -> None:
    """``alembic upgrade head`` for one tree/version table, creating the database first if needed.

    Safe to call from several processes at once: the first one migrates, the others wait for the lock
    and then find nothing to do.
    """
    db = await Database.connect(settings)
    try:
        async with _migration_lock(db) as conn:
            await conn.run_sync(_upgrade, Path(script_location), version_table)
            if conn.in_transaction():
                await conn.commit()
        log.info("migrations up to date: %s (%s)", script_location, version_table)
    finally:
        await db.close()


def alembic_config(script_location: Path, connection: Connection | None, version_table: str) -> Config:
    """An in-memory Alembic config; ``env.py`` reads ``connection`` and ``version_table`` from its attributes."""
    cfg = Config()
    # ConfigParser interpolates '%', so escape it in paths.
    cfg.set_main_option("script_location", str(script_location).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    return cfg


def _upgrade(connection: Connection, script_location: Path, version_table: str) -> None:
    command.upgrade(alembic_config(script_location, connection, version_table), "head")


def run_env(target_metadata: MetaData | None = None) -> None:
    """The body of every app's ``env.py``: run the migrations on the connection ``migrate`` provides.

    Online mode only; running the ``alembic`` command line directly is refused with a pointer to
    ``python -m <app> migrate``, which takes the lock.
    """
    config = context.config
    connection: Any = config.attributes.get("connection")
    version_table: Any = config.attributes.get("version_table")
    if context.is_offline_mode() or connection is None or not version_table:
        raise RuntimeError(
            "run migrations through shared.db.migrate.migrate() (`python -m webapp migrate` / "
            "`python -m coreapp migrate`), which supplies the connection and takes the lock"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=str(version_table),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def lock_key(database: str) -> int:
    """A stable signed 64-bit PostgreSQL advisory lock key for this install's migrations."""
    digest = hashlib.blake2b(f"{database}_migrate".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@asynccontextmanager
async def _migration_lock(db: Database) -> AsyncIterator[AsyncConnection]:
    """Yield a connection (outside any transaction) while holding the install-wide migration lock."""
    settings = db.settings
    if settings.engine is DbEngine.SQLITE:
        async with _file_lock(Path(f"{settings.sqlite_path}.migrate.lock")), db.engine.connect() as conn:
            yield conn
        return
    async with db.engine.connect() as conn:
        if settings.engine is DbEngine.MYSQL:
            name = f"{settings.database}_migrate"
            got = await conn.scalar(text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": LOCK_TIMEOUT_S})
            release = text("SELECT RELEASE_LOCK(:n)").bindparams(n=name)
        else:
            key = lock_key(settings.database)
            await conn.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'"))
            try:
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                got = 1
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available: lock_timeout fired
                    raise
                await conn.rollback()
                got = 0
            await conn.execute(text("RESET lock_timeout"))
            release = text("SELECT pg_advisory_unlock(:k)").bindparams(k=key)
        await conn.commit()
        if got != 1:
            raise MigrationLockTimeout(f"migration lock for {settings.database} not acquired in {LOCK_TIMEOUT_S}s")
        try:
            yield conn
        finally:
            # Session locks outlive transactions: release explicitly (closing the connection would too, but a
            # pooled connection is not closed).
            try:
                if conn.in_transaction():
                    await conn.rollback()
                await conn.execute(release)
                await conn.commit()
            except Exception:
                log.warning("could not release the migration lock; dropping the connection", exc_info=True)
                await conn.invalidate()


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """``flock`` (per open file, so it also excludes other tasks in this process), polled, bounded."""
    fd = await asyncio.to_thread(_open_lock_file, path)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while not _try_flock(fd):
            if time.monotonic() >= deadline:
                raise MigrationLockTimeout(f"migration lock {path} not acquired in {LOCK_TIMEOUT_S}s")
            await asyncio.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True
