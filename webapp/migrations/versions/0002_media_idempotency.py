"""webapp: retry-safe media uploads (the ``Idempotency-Key`` of each keyed ``POST /v1/media``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Never edit this file once landed: add a new revision instead (DESIGN §11.3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_media_idempotency",
        sa.Column("key_sha256", sa.String(64), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("media_id", sa.String(36), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_web_media_idempotency_created_at", "web_media_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_web_media_idempotency_created_at", table_name="web_media_idempotency")
    op.drop_table("web_media_idempotency")
