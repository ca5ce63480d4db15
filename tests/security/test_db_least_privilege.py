"""The apps' own database user (issue 12, point 6): enough to run OpenPrem, nothing beyond its database.

compose creates the user with the shipped init files (``docker/mysql-init.sql`` after the MySQL image's
``MYSQL_USER``; ``docker/postgres-init.sh``), and webapp and coreapp connect as it, never as root.  Here the same
files run against the real test servers (under unique names, since the servers are shared): both apps' migrations
then succeed as that user, and what a stolen app password could otherwise reach — the server's password hashes,
other databases, new databases or roles — is refused.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from openprem.embedded import migrate_all
from shared.config import DbEngine, DbSettings, Settings
from shared.db.engine import server_url
from tests.support.services import drop_database, mariadb_server, postgres_server, require_service

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def _engine(settings: DbSettings, database: str | None = None) -> AsyncEngine:
    return create_async_engine(server_url(settings, database), poolclass=NullPool, isolation_level="AUTOCOMMIT")


async def _execute(settings: DbSettings, statements: list[str], database: str | None = None) -> None:
    engine = _engine(settings, database)
    try:
        async with engine.connect() as conn:
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _refused(settings: DbSettings, statement: str, database: str | None = None) -> None:
    with pytest.raises(DBAPIError, match=r"(?i)denied|permission|must be|not allowed|privilege"):
        await _execute(settings, [statement], database)


async def _owned_tables(app: DbSettings, query: str) -> set[str]:
    engine = _engine(app)
    try:
        async with engine.connect() as conn:
            return {str(row[0]) for row in await conn.execute(text(query))}
    finally:
        await engine.dispose()


# -- MySQL / MariaDB ---------------------------------------------------------------------------------------------


@pytest.fixture
async def mysql_app_user() -> AsyncIterator[tuple[DbSettings, DbSettings]]:
    """(admin, app) settings: a user made as the MySQL image makes MYSQL_USER, given docker/mysql-init.sql."""
    host, port, admin_user, admin_password = mariadb_server()
    require_service(host, port, "MariaDB")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    admin = DbSettings(engine=DbEngine.MYSQL, hostname=host, port=port, username=admin_user, password=admin_password)
    app = admin.model_copy(
        update={"username": f"{prefix}app", "password": secrets.token_hex(16), "name_prefix": prefix}
    )
    init = (ROOT / "docker" / "mysql-init.sql").read_text()
    init = init.replace("`openprem`", f"`{app.database}`").replace("'openprem'@", f"'{app.username}'@")
    statements = [s.strip() for s in re.sub(r"(?m)^--.*$", "", init).split(";") if s.strip()]
    assert any(s.startswith("GRANT") for s in statements)
    await _execute(admin, [f"CREATE USER '{app.username}'@'%' IDENTIFIED BY '{app.password}'", *statements], "")
    try:
        yield admin, app
    finally:
        await _execute(admin, [f"DROP USER IF EXISTS '{app.username}'@'%'"], "")
        await drop_database(app.model_copy(update={"username": admin.username, "password": admin.password}))


async def test_mysql_app_user_runs_openprem_and_reaches_nothing_else(
    mysql_app_user: tuple[DbSettings, DbSettings],
) -> None:
    _, app = mysql_app_user
    await migrate_all(Settings(db=app))
    tables = await _owned_tables(
        app, f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{app.database}'"
    )
    assert {"messages", "web_users", "alembic_version_coreapp", "alembic_version_webapp"} <= tables
    await _refused(app, "SELECT authentication_string FROM mysql.user")
    await _refused(app, f"CREATE DATABASE `{app.name_prefix}other`")
    await _refused(app, f"CREATE USER '{app.name_prefix}x'@'%' IDENTIFIED BY 'x'")
    visible = await _owned_tables(app, "SHOW DATABASES")
    assert visible <= {app.database, "information_schema"}, visible


# -- PostgreSQL --------------------------------------------------------------------------------------------------


@pytest.fixture
async def pg_app_role() -> AsyncIterator[tuple[DbSettings, DbSettings]]:
    """(admin, app) settings: a role and database made by the shipped docker/postgres-init.sh, run with psql."""
    host, port, admin_user, admin_password = postgres_server()
    require_service(host, port, "PostgreSQL")
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    admin = DbSettings(engine=DbEngine.PGSQL, hostname=host, port=port, username=admin_user, password=admin_password)
    app = admin.model_copy(
        update={"username": f"{prefix}app", "password": secrets.token_hex(16), "name_prefix": prefix}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WA_", "PG"))}
    env.update(
        PGHOST=host,
        PGPORT=str(port),
        PGPASSWORD=admin_password,
        POSTGRES_USER=admin_user,
        OPENPREM_DB_USER=app.username,
        OPENPREM_DB_NAME=app.database,
        WA_DB_PASSWORD=app.password,
    )
    done = subprocess.run(
        ["sh", str(ROOT / "docker" / "postgres-init.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    other = f"{prefix}other"
    try:
        assert done.returncode == 0, done.stderr
        assert app.password not in done.stdout + done.stderr
        await _execute(admin, [f'CREATE DATABASE "{other}"'], "postgres")
        await _execute(admin, ["CREATE TABLE secret (v text)", "INSERT INTO secret VALUES ('theirs')"], other)
        yield admin, app
    finally:
        await drop_database(app.model_copy(update={"username": admin.username, "password": admin.password}))
        await drop_database(admin.model_copy(update={"name_prefix": f"{prefix}other_"}))
        await _execute(
            admin,
            [f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{app.username}"'],
            "postgres",
        )


async def test_postgres_app_role_runs_openprem_and_reaches_nothing_else(
    pg_app_role: tuple[DbSettings, DbSettings],
) -> None:
    admin, app = pg_app_role
    await migrate_all(Settings(db=app))
    tables = await _owned_tables(app, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert {"messages", "web_users", "alembic_version_coreapp", "alembic_version_webapp"} <= tables
    await _refused(app, "SELECT rolpassword FROM pg_authid")
    await _refused(app, f'CREATE DATABASE "{app.name_prefix}mine"', "postgres")
    await _refused(app, f'CREATE ROLE "{app.name_prefix}x"', "postgres")
    await _refused(app, "SELECT * FROM secret", f"{app.name_prefix}other")
    # Nobody else may even connect to the apps' database (REVOKE ALL ... FROM PUBLIC).
    await _execute(admin, [f"CREATE ROLE \"{app.name_prefix}peer\" LOGIN PASSWORD 'peer-{app.password}'"], "postgres")
    try:
        peer = app.model_copy(update={"username": f"{app.name_prefix}peer", "password": f"peer-{app.password}"})
        with pytest.raises(DBAPIError, match=r"(?i)permission denied|not have connect|authentication"):
            await _execute(peer, ["SELECT 1"])
    finally:
        await _execute(admin, [f'DROP ROLE IF EXISTS "{app.name_prefix}peer"'], "postgres")
