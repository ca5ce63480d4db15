"""coreapp's own tables (account, keys, messages, receipts, templates) as SQLAlchemy Core.

The schema itself is created by ``coreapp/migrations`` (written by hand to match this); the stores and tests
share these definitions.  Key material and ratchet state are JSON containing ``\\u0000``: ``LongText``, never
jsonb (DESIGN §4).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
)

from shared.db.types import LongBinary, LongText, UtcDateTime

metadata = MetaData()

account = Table(
    "account",
    metadata,
    # One row (id = 1): this install's number, pending until VerifyResponse, then registered.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cc", String(8), nullable=False),
    Column("phone_number", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("wa_id", String(32), nullable=True),
    Column("vname", String(255), nullable=False),
    Column("cert", LongText, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

identity = Table(
    "identity",
    metadata,
    # One row (id = 1): the Identity JSON (identity key pair, signed pre-key, one-time pre-keys), sealed
    # (coreapp.storage.sealing), as is each session's state below.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("data", LongText, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

signal_sessions = Table(
    "signal_sessions",
    metadata,
    Column("peer", String(32), nullable=False),
    Column("device_id", Integer, nullable=False),
    Column("state", LongText, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("peer", "device_id"),
)

messages = Table(
    "messages",
    metadata,
    # seq orders the outbox (accepted messages are sent in seq order); id is the On-Prem message id.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("direction", String(3), nullable=False),
    Column("peer", String(32), nullable=False),
    Column("type", String(32), nullable=False),
    Column("content", LongText, nullable=True),
    Column("status", String(16), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    # Outbound: the encoded per-device envelopes, written with the session states before the first Send.
    Column("envelopes", LongBinary, nullable=True),
    Column("error_code", Integer, nullable=True),
    Column("error_title", String(255), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # shared.shards.shard_of(peer, 32) (migration 0007): the peer's shard among N shards is shard32 % N.
    Column("shard32", SmallInteger, nullable=True),
)
Index("ix_messages_direction_status_seq", messages.c.direction, messages.c.status, messages.c.seq)
Index("ix_messages_out_shard", messages.c.direction, messages.c.status, messages.c.shard32, messages.c.seq)

message_receipt_log = Table(
    "message_receipt_log",
    metadata,
    Column("message_id", String(64), nullable=False),
    Column("device_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    PrimaryKeyConstraint("message_id", "device_id", "status"),
)

templates = Table(
    "templates",
    metadata,
    Column("namespace", String(128), nullable=False),
    Column("name", String(255), nullable=False),
    Column("language", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("category", String(32), nullable=False),
    Column("components", LongText, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("namespace", "name", "language"),
)
