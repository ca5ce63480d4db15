"""The ``settings`` table: named JSON documents (the application settings and other coreapp state).

Defined here as SQLAlchemy Core so the store and tests share one definition; the schema itself is created by
``coreapp/migrations`` (written by hand to match this).
"""

from __future__ import annotations

from sqlalchemy import Column, MetaData, String, Table

from shared.db.types import LongText, UtcDateTime

metadata = MetaData()

settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    # Text, not jsonb: PostgreSQL jsonb rejects \u0000 and reorders keys (DESIGN §4).
    Column("value", LongText, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
