"""The ``webhook_outbox`` table: one ordered queue of On-Prem webhook bodies waiting for an HTTP 200.

Defined here as SQLAlchemy Core so the store and tests share one definition; the schema itself is created by
``coreapp/migrations`` (written by hand to match this).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, UniqueConstraint

from shared.db.types import LongText, UtcDateTime

metadata = MetaData()

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    # BIGINT everywhere but SQLite, where only INTEGER PRIMARY KEY is the autoincrementing rowid.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("body", LongText, nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_error", String(255), nullable=True),
    UniqueConstraint("event_id", name="uq_webhook_outbox_event_id"),
)
