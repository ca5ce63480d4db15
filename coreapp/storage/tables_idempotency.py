"""The ``message_idempotency`` table: the ``Idempotency-Key`` of each keyed send (created by migration 0004).

A row is written in the transaction that stores its message, so a key found here always names a stored message.
Keys are kept as their SHA-256 (``shared.idempotency.key_digest``); rows older than ``shared.idempotency.TTL``
no longer count and are deleted by the message GC.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, MetaData, String, Table

from shared.db.types import UtcDateTime

metadata = MetaData()

message_idempotency = Table(
    "message_idempotency",
    metadata,
    Column("key_sha256", String(64), primary_key=True),
    Column("request_sha256", String(64), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_message_idempotency_created_at", "created_at"),
)
