"""The ``webhook_outbox`` table (On-Prem webhook bodies waiting for an HTTP 200) and ``webhook_log`` (one row per
delivery attempt, bounded, readable through ``GET /v1/webhooks/log``).

Defined here as SQLAlchemy Core so the store and tests share one definition; the schema itself is created by
``coreapp/migrations`` (written by hand to match this: 0001 made the outbox, 0003 added ``partition`` and the log).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, UniqueConstraint

from shared.db.types import LongText, UtcDateTime

metadata = MetaData()

_SEQ = BigInteger().with_variant(Integer, "sqlite")
"""BIGINT everywhere but SQLite, where only INTEGER PRIMARY KEY is the autoincrementing rowid."""

webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("body", LongText, nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_error", String(255), nullable=True),
    # The ordering key: events of one partition (the peer's wa_id) are delivered one at a time, in ``seq``
    # order; different partitions may be in flight together (``webhooks.max_concurrent_requests``).
    Column("partition_key", String(64), nullable=False, default="", server_default=""),
    UniqueConstraint("event_id", name="uq_webhook_outbox_event_id"),
)

webhook_log = Table(
    "webhook_log",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("host", String(255), nullable=False),  # host[:port] only: never a path, query or credentials
    Column("attempt", Integer, nullable=False),
    Column("status", Integer, nullable=True),  # the HTTP status, when there was an answer
    Column("error", String(255), nullable=True),  # why the attempt failed (no URL in it); NULL on a 200
    Column("latency_ms", Float, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_webhook_log_at", "at"),
)
