"""The database's own clock as an SQL expression: leases and fencing must never trust a host's clock.

``db_now_ms()`` is the server's wall clock in epoch milliseconds (an integer), evaluated when the statement
runs: PostgreSQL's ``clock_timestamp()`` (not ``now()``, which is frozen at the transaction's start), MySQL /
MariaDB's ``NOW(3)``, SQLite's ``julianday('now')`` (for SQLite the "server" is the one host, so it is simply
that clock).  All hosts that share the database agree on it, which is the point.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class db_now_ms(FunctionElement[int]):
    """Named like the SQL function it stands for."""

    type = BigInteger()
    inherit_cache = True
    name = "db_now_ms"


@compiles(db_now_ms, "postgresql")
def _pg(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp()) * 1000) AS BIGINT)"


@compiles(db_now_ms, "mysql")
@compiles(db_now_ms, "mariadb")
def _mysql(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "CAST(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000) AS SIGNED)"


@compiles(db_now_ms, "sqlite")
def _sqlite(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
