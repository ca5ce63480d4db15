"""Real services for tests: reachability checks and a fresh database per test on each backend.

Servers default to loopback (MariaDB root without password, PostgreSQL ``postgres`` with trust auth) and can be
moved with ``WA_TEST_MARIADB_HOST``/``_PORT``/``_USER``/``_PASSWORD`` and the ``WA_TEST_PG_*`` equivalents.
An unreachable server skips its tests, unless ``WA_TEST_REQUIRE_SERVICES=1`` (CI), which fails them.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from shared.config import DbEngine, DbSettings
from shared.db.engine import drop_database as _drop_database

BACKENDS = ("sqlite", "mariadb", "postgres")


def services_required() -> bool:
    return os.environ.get("WA_TEST_REQUIRE_SERVICES", "") == "1"


def require_service(host: str, port: int, name: str, timeout: float = 1.0) -> None:
    """Skip the calling test when ``name`` does not accept TCP at host:port (fail under WA_TEST_REQUIRE_SERVICES=1)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        message = f"{name} not reachable at {host}:{port} ({exc})"
    if services_required():
        pytest.fail(f"{message}; WA_TEST_REQUIRE_SERVICES=1 requires it", pytrace=False)
    pytest.skip(message)


def _server(prefix: str, default_port: int, default_user: str) -> tuple[str, int, str, str]:
    env = os.environ
    return (
        env.get(f"WA_TEST_{prefix}_HOST", "127.0.0.1"),
        int(env.get(f"WA_TEST_{prefix}_PORT", str(default_port))),
        env.get(f"WA_TEST_{prefix}_USER", default_user),
        env.get(f"WA_TEST_{prefix}_PASSWORD", ""),
    )


def mariadb_server() -> tuple[str, int, str, str]:
    """(host, port, admin user, password) of the MariaDB/MySQL test server."""
    return _server("MARIADB", 3306, "root")


def postgres_server() -> tuple[str, int, str, str]:
    """(host, port, admin user, password) of the PostgreSQL test server."""
    return _server("PG", 5432, "postgres")


def unique_prefix() -> str:
    """A fresh ``WA_DB_NAME_PREFIX`` so each test (and each parallel worker) gets its own database."""
    return f"t{uuid.uuid4().hex[:12]}_"


def db_settings_for(backend: str, tmp_path: Path, prefix: str | None = None) -> DbSettings:
    """``DbSettings`` for a new, not yet created database on ``backend`` (skips/fails if the server is down).

    The database itself is created by ``Database.connect``/``migrate``; remove it with ``drop_database``.
    For subprocesses, pass the same values as ``WA_DB_*`` variables (see ``db_env``).
    """
    name_prefix = prefix or unique_prefix()
    if backend == "sqlite":
        return DbSettings(engine=DbEngine.SQLITE, name_prefix=name_prefix, sqlite_path=tmp_path / "openprem.db")
    if backend == "mariadb":
        host, port, user, password = mariadb_server()
        require_service(host, port, "MariaDB")
        engine = DbEngine.MYSQL
    elif backend == "postgres":
        host, port, user, password = postgres_server()
        require_service(host, port, "PostgreSQL")
        engine = DbEngine.PGSQL
    else:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    return DbSettings(
        engine=engine, hostname=host, port=port, username=user, password=password, name_prefix=name_prefix
    )


def db_env(settings: DbSettings) -> dict[str, str]:
    """The ``WA_DB_*`` variables that make a subprocess's ``load_settings`` produce ``settings``."""
    return {
        "WA_DB_ENGINE": settings.engine.value,
        "WA_DB_HOSTNAME": settings.hostname,
        "WA_DB_PORT": str(settings.effective_port),
        "WA_DB_USERNAME": settings.username,
        "WA_DB_PASSWORD": settings.password,
        "WA_DB_NAME_PREFIX": settings.name_prefix,
        "WA_DB_SQLITE_PATH": str(settings.sqlite_path),
    }


async def drop_database(settings: DbSettings) -> None:
    """Drop the database ``settings`` points at (PG: ``WITH (FORCE)``; SQLite: the file and its WAL)."""
    await _drop_database(settings)
