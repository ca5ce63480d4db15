"""Column types and the upsert helper: the dialect differences storage modules must not repeat.

Measured pitfalls these cover (reference/dependencies.md §3): MySQL ``BLOB``/``TEXT`` cap at 64 KiB, MySQL
``DATETIME`` has no time zone and drops microseconds unless ``fsp=6``, and upsert syntax differs per dialect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Table, Text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeDecorator, TypeEngine

LongBinary = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
"""Bytes of any size: LONGBLOB on MySQL (plain BLOB is 64 KiB), BYTEA on PG, BLOB on SQLite."""

LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
"""Text of any size: LONGTEXT on MySQL, TEXT elsewhere.

Use it for JSON that may contain the escape ``\\u0000`` (ratchet state): PostgreSQL ``jsonb`` rejects that
escape.  A raw NUL *character* is still rejected by PostgreSQL ``text``; store such data as ``LongBinary``.
"""


class UtcDateTime(TypeDecorator[datetime]):
    """A point in time, always tz-aware UTC in Python and stored as naive UTC everywhere.

    Naive values are refused on the way in: guessing their zone is how timestamps drift.
    """

    impl = DateTime(timezone=False)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("UtcDateTime needs a timezone-aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            return value.astimezone(UTC)
        return value.replace(tzinfo=UTC)


async def upsert(
    conn: AsyncConnection,
    table: Table,
    values: Mapping[str, Any],
    key: Sequence[str],
    update: Sequence[str],
) -> None:
    """Insert ``values``, or on a conflict on ``key`` overwrite the ``update`` columns with the new values.

    ``key`` must be the primary key or a unique constraint.  With an empty ``update`` an existing row is left
    as is.  MySQL has no conflict target: ``ON DUPLICATE KEY UPDATE`` fires on *any* unique key of the table,
    so keep upserted tables to one unique key besides the primary key.
    """
    name = conn.dialect.name
    if name in ("mysql", "mariadb"):
        my = mysql.insert(table).values(dict(values))
        if update:
            my_stmt = my.on_duplicate_key_update({col: my.inserted[col] for col in update})
        else:  # the "do nothing" idiom: assign a key column to itself
            my_stmt = my.on_duplicate_key_update({key[0]: table.c[key[0]]})
        await conn.execute(my_stmt)
        return
    if name == "postgresql":
        pg = postgresql.insert(table).values(dict(values))
        if update:
            pg_stmt = pg.on_conflict_do_update(index_elements=list(key), set_={col: pg.excluded[col] for col in update})
        else:
            pg_stmt = pg.on_conflict_do_nothing(index_elements=list(key))
        await conn.execute(pg_stmt)
        return
    if name == "sqlite":
        lite = sqlite.insert(table).values(dict(values))
        if update:
            lite_stmt = lite.on_conflict_do_update(
                index_elements=list(key), set_={col: lite.excluded[col] for col in update}
            )
        else:
            lite_stmt = lite.on_conflict_do_nothing(index_elements=list(key))
        await conn.execute(lite_stmt)
        return
    raise NotImplementedError(f"upsert: unsupported dialect {name!r}")
