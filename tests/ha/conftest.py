"""The migrated coreapp database of the lease and shard-map tests, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coreapp.app import run_migrations
from shared.config import DbSettings, Settings
from shared.db.engine import Database


@pytest.fixture
async def db(backend: DbSettings) -> AsyncIterator[Database]:
    await run_migrations(Settings(db=backend))
    database = await Database.connect(backend)
    try:
        yield database
    finally:
        await database.close()
