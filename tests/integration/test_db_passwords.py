"""A database password with every URL-hostile character must work end to end (DESIGN §4)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from shared.config import DbEngine, DbSettings
from shared.db import Database
from shared.db.engine import server_url
from tests.support.services import db_settings_for, drop_database

PASSWORD = "p?{}&~!()^@:/#%w"


async def _admin_exec(settings: DbSettings, *statements: str) -> None:
    admin_db = "" if settings.engine is DbEngine.MYSQL else "postgres"
    engine = create_async_engine(server_url(settings, admin_db), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.exec_driver_sql(statement.replace("%", "%%"))  # both drivers use pyformat
    finally:
        await engine.dispose()


async def _whoami(settings: DbSettings) -> str:
    db = await Database.connect(settings)
    try:

        async def who(conn: AsyncConnection) -> str:
            query = "SELECT CURRENT_USER()" if settings.engine is DbEngine.MYSQL else "SELECT current_user"
            return str(await conn.scalar(sa.text(query)))

        return await db.run("whoami", who)
    finally:
        await db.close()


async def test_mariadb_user_with_special_password(tmp_path) -> None:
    admin = db_settings_for("mariadb", tmp_path)
    user = f"u{uuid.uuid4().hex[:10]}"
    literal = PASSWORD.replace("\\", "\\\\").replace("'", "''")
    settings = admin.model_copy(update={"username": user, "password": PASSWORD})
    try:
        await _admin_exec(
            admin,
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{literal}'",
            f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{literal}'",
            f"GRANT ALL ON `{admin.database}`.* TO '{user}'@'%'",
            f"GRANT ALL ON `{admin.database}`.* TO '{user}'@'localhost'",
        )
        assert make_url(settings.url()).password == PASSWORD
        assert (await _whoami(settings)).startswith(f"{user}@")
        wrong = settings.model_copy(update={"password": PASSWORD + "x"})
        try:
            await _whoami(wrong)
        except sa.exc.OperationalError as exc:
            assert "Access denied" in str(exc)  # proves the server really checks this password
        else:
            raise AssertionError("a wrong password was accepted")
    finally:
        await _admin_exec(admin, f"DROP USER IF EXISTS '{user}'@'%'", f"DROP USER IF EXISTS '{user}'@'localhost'")
        await drop_database(admin)


async def test_postgres_role_with_special_password(tmp_path) -> None:
    admin = db_settings_for("postgres", tmp_path)
    role = f"u{uuid.uuid4().hex[:10]}"
    literal = PASSWORD.replace("'", "''")
    settings = admin.model_copy(update={"username": role, "password": PASSWORD})
    try:
        await _admin_exec(admin, f"CREATE ROLE \"{role}\" LOGIN CREATEDB PASSWORD '{literal}'")
        url = make_url(settings.url())
        assert (url.username, url.password) == (role, PASSWORD)
        # What psycopg receives: loopback may use trust auth, so also check the driver's connect arguments.
        engine = create_async_engine(server_url(settings), poolclass=NullPool)
        try:
            _, kwargs = engine.dialect.create_connect_args(engine.url)
            assert kwargs["password"] == PASSWORD
        finally:
            await engine.dispose()
        assert await _whoami(settings) == role  # Database.connect creates the database as this role
    finally:
        await drop_database(admin)
        await _admin_exec(admin, f'DROP ROLE IF EXISTS "{role}"')
