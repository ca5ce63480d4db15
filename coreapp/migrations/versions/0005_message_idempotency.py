"""Retry-safe sends: the ``Idempotency-Key`` of each keyed ``POST /v1/messages`` and the message it stored.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Never edit this file once landed: add a new revision instead (DESIGN §11.3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_idempotency",
        sa.Column("key_sha256", sa.String(64), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_message_idempotency_created_at", "message_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_message_idempotency_created_at", table_name="message_idempotency")
    op.drop_table("message_idempotency")
