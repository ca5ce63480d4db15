"""chatd's persistence: JSON documents in one SQLite table, written through with group commits.

Every component keeps its hot state in memory and loads it once at start; each change is queued here as a
``put`` or ``delete`` and written by one writer task that commits whatever has accumulated in a single
transaction.  Callers that must not acknowledge before the change is durable (an ``Ack`` to a ``Send``, a
registration) ``await sync()``, which waits for the commit holding their writes.  So a burst of hundreds of
messages costs a handful of commits, not one each, and the loop never blocks on disk.

Documents of one kind come back in insertion order (SQLite rowid; upserts keep the row), which is what the
ordered queues (pending pushes, held envelopes, inboxes) rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiosqlite

from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.chatd.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (kind, key)
);
"""
_UPSERT = (
    "INSERT INTO docs (kind, key, body) VALUES (?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body"
)
_DELETE = "DELETE FROM docs WHERE kind = ? AND key = ?"

# (kind, key) -> body, or None for a delete
_Pending = dict[tuple[str, str], str | None]


class Store:
    """A document store: ``load`` at start, then ``put``/``delete`` (queued) and ``sync`` (durable)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        # Its own supervisor: the writer must outlive every other chatd task so their last writes get flushed.
        self._tasks = TaskSupervisor("chatd-store")
        self._db: aiosqlite.Connection | None = None
        self._pending: _Pending = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._committing = False  # a batch is being written: its puts are no longer in ``_pending``

    async def open(self) -> None:
        await asyncio.to_thread(self._path.parent.mkdir, parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(_SCHEMA)
        await self._db.commit()
        self._tasks.spawn("store-writer", self._write_loop())

    async def close(self) -> None:
        """Flush what is queued, then close."""
        if self._db is None:
            return
        with contextlib.suppress(Exception):
            await self.sync()
        await self._tasks.close()
        await self._db.close()
        self._db = None

    async def load(self, kind: str) -> list[tuple[str, str]]:
        """All ``(key, body)`` of a kind, in insertion order."""
        db = self._require()
        async with db.execute("SELECT key, body FROM docs WHERE kind = ? ORDER BY rowid", (kind,)) as cur:
            rows = await cur.fetchall()
        return [(str(key), str(body)) for key, body in rows]

    def put(self, kind: str, key: str, body: str) -> None:
        """Queue an insert-or-replace; durable after the next ``sync``."""
        self._pending[(kind, key)] = body
        self._wake.set()

    def delete(self, kind: str, key: str) -> None:
        self._pending[(kind, key)] = None
        self._wake.set()

    async def sync(self) -> None:
        """Wait until everything queued so far is committed."""
        if not self._pending and not self._committing:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        await fut

    def _require(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, []
            self._committing = True
            try:
                if batch:
                    await self._commit(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("chatd store: commit of %d changes failed", len(batch))
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            finally:
                self._committing = False
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _commit(self, batch: _Pending) -> None:
        db = self._require()
        puts = [(kind, key, body) for (kind, key), body in batch.items() if body is not None]
        dels = [(kind, key) for (kind, key), body in batch.items() if body is None]
        await db.execute("BEGIN")
        try:
            if puts:
                await db.executemany(_UPSERT, puts)
            if dels:
                await db.executemany(_DELETE, dels)
        except BaseException:
            await db.rollback()
            raise
        await db.commit()
