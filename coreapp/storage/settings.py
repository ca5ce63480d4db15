"""Named JSON settings in the ``settings`` table, and the application settings (``/v1/settings/application``).

Only the keys a PATCH ever set are stored; reads merge them over the defaults of ``ApplicationSettings``, so a
default changed in a later release reaches every install that never overrode it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.storage.tables_settings import settings as settings_table
from shared.appsettings import ApplicationSettings, apply_patch, merge
from shared.db.engine import Database
from shared.db.types import upsert
from shared.errors import ApiError, ErrorCode

log = logging.getLogger("openprem.coreapp.settings")

APPLICATION = "application"
"""Row name of the application settings overrides."""

SettingsListener = Callable[[ApplicationSettings], None]


def describe_validation_error(exc: ValidationError) -> str:
    """``webhooks.max_concurrent_requests: Input should be 6, 12, 18 or 24; …`` for the 1009 ``details``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "application"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class SettingsStore:
    """SQL for ``settings`` plus an in-process cache of the application settings.

    The cache is refreshed on every write through this store.  Another process writing the same row is not
    seen until restart; only coreapp writes application settings (webapp goes through the bus).
    """

    def __init__(self, db: Database, *, cache_ttl_s: float | None = None) -> None:
        """``cache_ttl_s``: multiconnect, where the primary master writes and every node reads: a node sees a
        change within this long (the "configuration broadcast"); ``None``: one process writes, cache for good."""
        self._db = db
        self._cache_ttl_s = cache_ttl_s
        self._cached_at = 0.0
        self._cache: ApplicationSettings | None = None
        self._lock = asyncio.Lock()  # serialises read-modify-write of the application row in this process
        self._listeners: list[SettingsListener] = []
        self._generation = 0  # bumped by every write, so a read that raced a write does not cache stale data

    def add_listener(self, listener: SettingsListener) -> None:
        """Call ``listener(new_settings)`` after each successful patch or reset (e.g. to wake the dispatcher)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: SettingsListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # --- generic named JSON values -------------------------------------------------------------------------

    async def get(self, name: str, *, fenced: bool = True) -> Any | None:
        """The JSON value stored under ``name``, or ``None`` when absent (``fenced=False``: also for a node that
        holds no role, e.g. to read the lease timing)."""
        return await self._db.run("settings.get", lambda conn: self._get_txn(conn, name), fenced=fenced)

    async def put(self, name: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``name``, replacing any previous value."""
        if name == APPLICATION:
            raise ValueError("application settings are written through patch_application (validated)")
        await self._db.run("settings.put", lambda conn: self._put_txn(conn, name, value))

    async def _get_txn(self, conn: AsyncConnection, name: str, *, for_update: bool = False) -> Any | None:
        stmt = select(settings_table.c.value).where(settings_table.c.name == name)
        if for_update:
            stmt = stmt.with_for_update()
        raw = await conn.scalar(stmt)
        return None if raw is None else orjson.loads(raw)

    async def _put_txn(self, conn: AsyncConnection, name: str, value: Any) -> None:
        await upsert(
            conn,
            settings_table,
            {"name": name, "value": orjson.dumps(value).decode(), "updated_at": datetime.now(UTC)},
            key=["name"],
            update=["value", "updated_at"],
        )

    # --- application settings ------------------------------------------------------------------------------

    async def get_application(self) -> ApplicationSettings:
        """The effective settings: stored overrides merged over the defaults (cached)."""
        cached = self._cache
        fresh = self._cache_ttl_s is None or time.monotonic() - self._cached_at < self._cache_ttl_s
        if cached is not None and fresh:
            return cached
        generation = self._generation
        value = _effective(await self.get(APPLICATION))
        if generation == self._generation:
            self._cache, self._cached_at = value, time.monotonic()
        return value

    async def patch_application(self, partial: dict[str, Any]) -> ApplicationSettings:
        """Apply a partial document (keys left out stay as they are); 1009 when a key or value is invalid."""
        if not isinstance(partial, dict):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "application settings must be an object")

        async def fn(conn: AsyncConnection) -> ApplicationSettings:
            stored = await self._get_txn(conn, APPLICATION, for_update=True)
            overrides = merge(stored if isinstance(stored, dict) else {}, partial)
            try:
                new = apply_patch(ApplicationSettings(), overrides)
            except ValidationError as exc:
                raise ApiError(ErrorCode.INVALID_PARAMETER, describe_validation_error(exc)) from None
            await self._put_txn(conn, APPLICATION, overrides)
            return new

        async with self._lock:
            self._invalidate()
            new = await self._db.run("settings.patch_application", fn)
            self._invalidate()  # again: a read that began during the write must not cache what it saw
            self._cache, self._cached_at = new, time.monotonic()
        self._notify(new)
        return new

    async def reset_application(self) -> ApplicationSettings:
        """Forget every override: back to the defaults."""

        async def fn(conn: AsyncConnection) -> None:
            await conn.execute(delete(settings_table).where(settings_table.c.name == APPLICATION))

        async with self._lock:
            self._invalidate()
            await self._db.run("settings.reset_application", fn)
            self._invalidate()
            new = self._cache = ApplicationSettings()
        self._notify(new)
        return new

    async def reload(self) -> ApplicationSettings:
        """Drop the cache and re-read (after rows were written behind this store, e.g. a restore); notifies."""
        async with self._lock:
            self._invalidate()
            new = _effective(await self.get(APPLICATION))
            self._cache, self._cached_at = new, time.monotonic()
        self._notify(new)
        return new

    def _invalidate(self) -> None:
        self._cache = None
        self._generation += 1

    def _notify(self, value: ApplicationSettings) -> None:
        for listener in self._listeners:
            try:
                listener(value)
            except Exception:
                log.exception("settings listener %r failed", listener)


def _effective(stored: Any | None) -> ApplicationSettings:
    """Merge stored overrides over the defaults, dropping keys a newer release no longer accepts.

    A stored key that stopped validating must not take the whole document (and the webhook URL) down with it.
    """
    overrides: dict[str, Any] = stored if isinstance(stored, dict) else {}
    try:
        return apply_patch(ApplicationSettings(), overrides)
    except ValidationError as exc:
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        log.warning("ignoring stored application settings that no longer validate: %s", ", ".join(sorted(bad)))
        kept = {k: v for k, v in overrides.items() if k not in bad}
        try:
            return apply_patch(ApplicationSettings(), kept)
        except ValidationError:
            log.error("stored application settings are unusable; using defaults")
            return ApplicationSettings()
