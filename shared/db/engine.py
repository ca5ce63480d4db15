"""One async SQLAlchemy engine per process, and named, retried transactions.

Every transaction goes through ``Database.run(name, fn)`` so deadlock handling, timing and slow-transaction logs
live in one place (DESIGN §4, §11.2).  ``fn`` must be safe to run again: it is retried from the start, in a new
transaction, when the database reports a deadlock, a serialisation failure or "database is locked", and once
when the connection turned out to be dead before the transaction reached its COMMIT.

Round trips (bench/README.md): no ``pool_pre_ping`` (a ping per checkout); a connection that died while pooled
fails its first statement, SQLAlchemy invalidates it (and every connection as old), and ``run`` retries the
transaction on a fresh one; ``pool_recycle`` retires connections before server idle timeouts.  No
reset-on-return ``ROLLBACK`` on MySQL/PostgreSQL: every checkout ends in COMMIT or ROLLBACK already
(``engine.begin()`` in ``run``; ``Connection.close()`` rolls back an open transaction for ``engine.connect()``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from shared.config import DbEngine, DbSettings
from shared.private_files import create_private_file, make_private_dirs, tighten
from shared.tasks import finish_then_cancel

log = logging.getLogger("openprem.db")

T = TypeVar("T")
Fence = Callable[[AsyncConnection], Awaitable[None]]
"""Checks, inside a transaction, that this node still holds the role it acts under; raises when it does not."""

MAX_ATTEMPTS = 5
"""Attempts per transaction (1 + 4 retries); bounded so a livelock surfaces as an error, not a hang."""
MAX_DISCONNECT_RETRIES = 1
"""Retries of a transaction whose connection was found dead (a pooled connection the server dropped)."""
BACKOFF_BASE_S = 0.02
BACKOFF_CAP_S = 0.5
SLOW_TRANSACTION_S = 1.0
SQLITE_BUSY_TIMEOUT_MS = 30000

_MYSQL_RETRYABLE = frozenset({1213, 1205})  # ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
_PG_RETRYABLE = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_SQLITE_RETRYABLE = ("database is locked", "database table is locked")


@dataclass
class _Stat:
    count: int = 0
    total_s: float = 0.0
    retries: int = 0
    failures: int = 0


def is_retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a transient concurrency error that a fresh transaction can get past."""
    orig: Any = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate in _PG_RETRYABLE:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRYABLE:
        return True
    message = str(orig).lower()
    return any(fragment in message for fragment in _SQLITE_RETRYABLE)


def is_disconnect(exc: BaseException) -> bool:
    """Whether SQLAlchemy found the connection dead (it has invalidated it and the pool's older connections)."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _backoff(attempt: int) -> float:
    """Full jitter, so two victims of the same deadlock do not collide again in lockstep."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))


class Database:
    """The process's engine plus the one way to run a transaction on it."""

    def __init__(self, engine: AsyncEngine, settings: DbSettings) -> None:
        self._engine = engine
        self._settings = settings
        self._stats: dict[str, _Stat] = {}
        self.fence: Fence | None = None
        """Multiconnect: the check every fenced transaction makes first (``coreapp.ha``); ``None``: no roles."""

    @classmethod
    async def connect(cls, settings: DbSettings) -> Database:
        """Create the database if missing (MySQL/PG) and an engine tuned for the backend.

        SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` for every transaction so writers
        queue on the busy timeout instead of failing when a read lock would need upgrading.
        """
        await ensure_database(settings)
        if settings.engine is DbEngine.SQLITE:
            engine = _sqlite_engine(settings)
        else:
            engine = create_async_engine(
                server_url(settings),
                pool_pre_ping=False,  # a dead connection fails fast and ``run`` retries (module docstring)
                pool_reset_on_return=None,  # ``run`` always ends in COMMIT/ROLLBACK: no extra ROLLBACK
                pool_recycle=max(1, settings.connection_idle_timeout_ms // 1000),
                pool_size=settings.pool_size,
                max_overflow=0,  # WA_DB_POOL_SIZE is the cap on server connections per process
            )
        return cls(engine, settings)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def settings(self) -> DbSettings:
        return self._settings

    async def run(self, name: str, fn: Callable[[AsyncConnection], Awaitable[T]], *, fenced: bool = True) -> T:
        """Run ``fn(conn)`` in one transaction named ``name``; retry transient concurrency errors.

        With a ``fence`` set (multiconnect: the lease this node acts under), every transaction first checks it
        inside the same transaction, so a node that lost its role can neither write nor read on; ``fenced=False``
        only for the lease statements themselves.

        Cancelling the caller does not interrupt a transaction in progress: it completes first (see
        ``finish_then_cancel``), so ``fn`` should be short and never wait on anything but the database.

        The whole transaction (including ``BEGIN``, where SQLite reports a held write lock) is retried up to
        ``MAX_ATTEMPTS`` times with jittered exponential backoff; other errors propagate at once.
        """
        stat = self._stats.setdefault(name, _Stat())
        started = time.perf_counter()
        attempt = 0
        disconnects = 0
        try:
            while True:
                progress = _Progress()
                try:
                    # A started transaction always ends in COMMIT or ROLLBACK, even when our caller is
                    # cancelled: abandoned mid-query it would keep its connection (and SQLite's write lock).
                    return await finish_then_cancel(self._attempt(fn, progress, self.fence if fenced else None))
                except DBAPIError as exc:
                    attempt += 1
                    # A connection lost during COMMIT may have committed: running ``fn`` again could apply it
                    # twice, so only a transaction that died before its COMMIT is retried.
                    dead = is_disconnect(exc) and not progress.committing
                    if dead:
                        disconnects += 1
                    retry = is_retryable(exc) or (dead and disconnects <= MAX_DISCONNECT_RETRIES)
                    if attempt >= MAX_ATTEMPTS or not retry:
                        stat.failures += 1
                        raise
                    stat.retries += 1
                    delay = 0.0 if dead else _backoff(attempt)
                    log.info("transaction %s: retry %d after %s (in %.3fs)", name, attempt, _short(exc), delay)
                    await asyncio.sleep(delay)
        finally:
            elapsed = time.perf_counter() - started
            stat.count += 1
            stat.total_s += elapsed
            if elapsed >= SLOW_TRANSACTION_S:
                log.warning("slow transaction %s: %.3fs (%d retries)", name, elapsed, attempt)

    async def _attempt(
        self, fn: Callable[[AsyncConnection], Awaitable[T]], progress: _Progress, fence: Fence | None
    ) -> T:
        async with self._engine.begin() as conn:
            if fence is not None:
                await fence(conn)
            result = await fn(conn)
            progress.committing = True  # leaving the block sends COMMIT
        return result

    def stats(self) -> dict[str, dict[str, float]]:
        """Per-name ``count``, ``total_s``, ``retries``, ``failures``, for metrics exporters."""
        return {
            name: {"count": s.count, "total_s": s.total_s, "retries": s.retries, "failures": s.failures}
            for name, s in self._stats.items()
        }

    async def close(self) -> None:
        await self._engine.dispose()


@dataclass
class _Progress:
    committing: bool = False


def _short(exc: DBAPIError) -> str:
    return f"{type(exc.orig).__name__}: {str(exc.orig).splitlines()[0] if str(exc.orig) else ''}"


def server_url(settings: DbSettings, database: str | None = None) -> URL:
    """``settings.url()`` plus driver options: utf8mb4 for MySQL, so 4-byte characters and emoji survive; UTF-8 as
    PostgreSQL's client encoding, whatever the server's or the database's (psycopg follows the server's by
    default, and on a SQL_ASCII database it returns text as bytes, which broke coreapp's start)."""
    url = make_url(settings.url(database))
    if settings.engine is DbEngine.MYSQL:
        url = url.update_query_dict({"charset": "utf8mb4"})
    elif settings.engine is DbEngine.PGSQL:
        url = url.update_query_dict({"client_encoding": "utf8"})
    return url


async def ensure_database(settings: DbSettings) -> None:
    """Create ``settings.database`` on the server if missing; safe when several processes race.

    This is also the start-up gate (the original's ``wait_on_mysql.sh``): while the server refuses
    connections it is retried for up to ``settings.startup_wait_s``, with a log line per attempt, so a
    container started before its database simply waits.
    """
    if settings.engine is DbEngine.SQLITE:
        await asyncio.to_thread(_prepare_sqlite_file, Path(settings.sqlite_path))
        return
    deadline = time.monotonic() + settings.startup_wait_s
    delay = 0.5
    while True:
        try:
            await _create_database(settings)
            return
        except (DBAPIError, OSError) as exc:
            if not _is_unreachable(exc) or time.monotonic() + delay > deadline:
                raise
            reason = _short(exc) if isinstance(exc, DBAPIError) else str(exc)
            log.warning("waiting for the database at %s:%s (%s)", settings.hostname, settings.effective_port, reason)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _is_unreachable(exc: BaseException) -> bool:
    """A refused or failed connection (server not up yet), as opposed to bad credentials or SQL."""
    orig: Any = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(orig, OSError):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in {2002, 2003, 2006, 2013}:  # MySQL client: can't connect
        return True
    message = str(orig).lower()
    return "connection refused" in message or "could not connect" in message or "connect call failed" in message


async def _create_database(settings: DbSettings) -> None:
    name = settings.database
    admin_db = "" if settings.engine is DbEngine.MYSQL else "postgres"
    admin = create_async_engine(server_url(settings, admin_db), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            if settings.engine is DbEngine.MYSQL:
                # Check first: IF NOT EXISTS on an existing database leaves a server note asyncmy logs as a warning.
                query = text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n")
                if await conn.scalar(query, {"n": name}):
                    return
                await conn.execute(
                    text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                )
                return
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists:
                return
            try:
                await conn.execute(text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"))
            except (ProgrammingError, IntegrityError):
                # Another process created it between our check and our CREATE (42P04 or a unique violation).
                if not await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
                    raise
    finally:
        await admin.dispose()


async def drop_database(settings: DbSettings) -> None:
    """Drop the install's database (tests and ``reset`` tooling); SQLite removes the file and its WAL."""
    name = settings.database
    if settings.engine is DbEngine.SQLITE:
        await asyncio.to_thread(_unlink_sqlite_files, Path(settings.sqlite_path))
        return
    admin_db = "" if settings.engine is DbEngine.MYSQL else "postgres"
    admin = create_async_engine(server_url(settings, admin_db), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            if settings.engine is DbEngine.MYSQL:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            else:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def _prepare_sqlite_file(path: Path) -> None:
    """The database file made 0600 (in 0700 directories) before SQLite opens it: SQLite gives its ``-wal`` and
    ``-shm`` files the mode of the database file, so the three stay private.  Files an older version left
    readable by others are narrowed."""
    make_private_dirs(path.parent)
    if not create_private_file(path):
        for suffix in ("", "-wal", "-shm"):
            if tighten(Path(f"{path}{suffix}")):
                log.warning("%s%s was readable by other users: narrowed to owner only", path, suffix)


def _unlink_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".migrate.lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _sqlite_engine(settings: DbSettings) -> AsyncEngine:
    engine = create_async_engine(
        server_url(settings),
        pool_size=settings.pool_size,
        max_overflow=0,
    )
    install_sqlite_hooks(engine)
    return engine


def install_sqlite_hooks(engine: AsyncEngine) -> None:
    """SQLAlchemy's documented aiosqlite recipe: the driver emits no BEGIN, we emit ``BEGIN IMMEDIATE``.

    pysqlite's own transaction handling begins lazily (DEFERRED) before DML only, so a transaction that reads
    first and writes later must upgrade its lock and can fail with "database is locked" regardless of the
    busy timeout; taking the write lock at BEGIN makes writers queue on the busy timeout instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
