"""Webhooks: the dead-letter list (``webhook_dead``) and the delivery log's ``action``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Never edit this file once landed: add a new revision instead (DESIGN §11.3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import LongText, UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_dead",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("body", LongText, nullable=False),
        sa.Column("partition_key", sa.String(64), nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(255), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("dead_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_webhook_dead_event_id"),
    )
    op.create_index("ix_webhook_dead_dead_at", "webhook_dead", ["dead_at"])
    # Rows logged before this revision were all attempts.
    with op.batch_alter_table("webhook_log") as batch:
        batch.add_column(sa.Column("action", sa.String(16), nullable=False, server_default="attempt"))


def downgrade() -> None:
    with op.batch_alter_table("webhook_log") as batch:
        batch.drop_column("action")
    op.drop_index("ix_webhook_dead_dead_at", table_name="webhook_dead")
    op.drop_table("webhook_dead")
