"""A table with every portable type, for the shared.db tests.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.db.types import LongBinary, LongText, UtcDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("data", LongBinary, nullable=True),
        sa.Column("body", LongText, nullable=True),
        sa.Column("at", UtcDateTime(), nullable=True),
        sa.Column("counter", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "pairs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("v", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pairs")
    op.drop_table("items")
