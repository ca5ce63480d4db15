"""coreapp's initial schema: account, keys, messages, receipts, templates, settings, webhook outbox.

Revision ID: 0001
Revises:
Create Date: 2025-11-21

Never edit this file once landed: add a new revision instead (DESIGN §11.3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import LongBinary, LongText, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("cc", sa.String(8), nullable=False),
        sa.Column("phone_number", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("wa_id", sa.String(32), nullable=True),
        sa.Column("vname", sa.String(255), nullable=False),
        sa.Column("cert", LongText, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "identity",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("data", LongText, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "signal_sessions",
        sa.Column("peer", sa.String(32), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("state", LongText, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("peer", "device_id"),
    )
    op.create_table(
        "messages",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("peer", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("content", LongText, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("envelopes", LongBinary, nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_title", sa.String(255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("id", name="uq_messages_id"),
    )
    op.create_index("ix_messages_direction_status_seq", "messages", ["direction", "status", "seq"])
    op.create_table(
        "message_receipt_log",
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "device_id", "status"),
    )
    op.create_table(
        "templates",
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("components", LongText, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", "language"),
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", LongText, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("body", LongText, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_webhook_outbox_event_id"),
    )


def downgrade() -> None:
    for name in (
        "webhook_outbox",
        "settings",
        "templates",
        "message_receipt_log",
        "messages",
        "signal_sessions",
        "identity",
        "account",
    ):
        op.drop_table(name)
