"""The contacts cache: what the network said about a number, and when (``POST /v1/contacts``).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-24

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
        "contacts",
        sa.Column("number", sa.String(32), primary_key=True),
        sa.Column("wa_id", sa.String(32), nullable=True),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_contacts_checked_at", "contacts", ["checked_at"])


def downgrade() -> None:
    op.drop_index("ix_contacts_checked_at", table_name="contacts")
    op.drop_table("contacts")
