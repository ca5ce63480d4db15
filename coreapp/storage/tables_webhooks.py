"""The ``webhook_outbox`` table (On-Prem webhook bodies waiting for an HTTP 200), ``webhook_dead`` (the ones given
up on: too old or too many failures, replayable by an admin) and ``webhook_log`` (one row per delivery attempt,
dead-lettering or replay, bounded, readable through ``GET /v1/webhooks/log``).

Defined here as SQLAlchemy Core so the store and tests share one definition; the schema itself is created by
``coreapp/migrations`` (written by hand to match this: 0001 made the outbox, 0003 added ``partition`` and the log,
0004 the dead-letter table and the log's ``action``).
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

webhook_dead = Table(
    "webhook_dead",
    metadata,
    Column("id", _SEQ, primary_key=True, autoincrement=True),  # dead-lettering order
    Column("event_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),  # its outbox seq (a replay queues it under a new one)
    Column("kind", String(32), nullable=False),
    Column("body", LongText, nullable=False),
    Column("partition_key", String(64), nullable=False, default="", server_default=""),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(255), nullable=True),
    Column("reason", String(32), nullable=False),  # ``max_age`` | ``max_attempts``
    Column("created_at", UtcDateTime, nullable=False),  # when it entered the outbox
    Column("dead_at", UtcDateTime, nullable=False),
    UniqueConstraint("event_id", name="uq_webhook_dead_event_id"),
    Index("ix_webhook_dead_dead_at", "dead_at"),
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
    # ``attempt`` (a POST), ``dead_lettered`` (moved to ``webhook_dead``) or ``replayed`` (queued again by an admin)
    Column("action", String(16), nullable=False, default="attempt", server_default="attempt"),
    Index("ix_webhook_log_at", "at"),
)
