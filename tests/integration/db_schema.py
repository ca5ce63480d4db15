"""Table objects matching tests/integration/db_migrations (what a storage module would declare)."""

from pathlib import Path

import sqlalchemy as sa

from shared.db.types import LongBinary, LongText, UtcDateTime

MIGRATIONS = Path(__file__).parent / "db_migrations"
VERSION_TABLE = "alembic_version_dbtest"

metadata = sa.MetaData()
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("data", LongBinary),
    sa.Column("body", LongText),
    sa.Column("at", UtcDateTime()),
    sa.Column("counter", sa.Integer, nullable=False, server_default="0"),
)
pairs = sa.Table(
    "pairs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("v", sa.Integer, nullable=False),
)
