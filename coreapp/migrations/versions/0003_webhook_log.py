"""Webhooks: the outbox's ordering ``partition`` (for ``max_concurrent_requests``) and the delivery log.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-26

Never edit this file once landed: add a new revision instead (DESIGN §11.3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Rows queued before this revision get partition_key "": they form one partition, still in seq order.
    with op.batch_alter_table("webhook_outbox") as batch:
        batch.add_column(sa.Column("partition_key", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "webhook_log",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(255), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_webhook_log_at", "webhook_log", ["at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_log_at", table_name="webhook_log")
    op.drop_table("webhook_log")
    with op.batch_alter_table("webhook_outbox") as batch:
        batch.drop_column("partition_key")
