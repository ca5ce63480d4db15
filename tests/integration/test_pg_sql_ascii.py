"""A PostgreSQL database created as SQL_ASCII (issue 14): coreapp starts and its stores round-trip text.

psycopg's client encoding follows the server's by default; on a SQL_ASCII database it then returns text columns
as bytes, and coreapp crashed at start.  ``shared.db.engine.server_url`` asks for UTF-8 on every connection.
Here a SQL_ASCII database is made from template0 on the real test server, and both apps' migrations and a
settings round trip with non-ASCII text run on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from coreapp.storage.settings import SettingsStore
from openprem.embedded import migrate_all
from shared.config import Settings
from shared.db.engine import Database, server_url
from tests.support.services import db_settings_for, drop_database

pytestmark = pytest.mark.timeout(180)


async def test_sql_ascii_database_migrates_and_round_trips_text(tmp_path: Path) -> None:
    db_settings = db_settings_for("postgres", tmp_path)
    admin = create_async_engine(server_url(db_settings, "postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(
                text(f"CREATE DATABASE \"{db_settings.database}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' "
                     "TEMPLATE template0")
            )
    finally:
        await admin.dispose()
    try:
        await migrate_all(Settings(db=db_settings))
        db = await Database.connect(db_settings)
        try:
            async with db.engine.connect() as conn:
                assert await conn.scalar(text("SHOW server_encoding")) == "SQL_ASCII"
                assert await conn.scalar(text("SHOW client_encoding")) == "UTF8"
                version = await conn.scalar(text("SELECT version_num FROM alembic_version_coreapp"))
                assert isinstance(version, str)
            store = SettingsStore(db)
            value = {"name": "Grüße 👋 from OpenPrem", "n": 1}
            await store.put("smoke", value)
            assert await store.get("smoke") == value
            app = await store.get_application()
            assert app is not None
        finally:
            await db.engine.dispose()
    finally:
        await drop_database(db_settings)
