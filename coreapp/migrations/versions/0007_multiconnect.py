"""Multiconnect: each message's shard (``messages.shard32``) and the shard map (``shard_map``).

``shard32`` is ``shared.shards.shard_of(peer, 32)``: since every shard count divides 32, the shard of a peer
among N shards is ``shard32 % N``, so each shard owner reads its own pending messages with one index.  Rows of
earlier versions that may still be sent (outbound, accepted) get it here; others never need it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Never edit this file once landed: add a new revision instead (DESIGN §11.3).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.shards import shard_of

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("shard32", sa.SmallInteger(), nullable=True))
    op.create_table(
        "shard_map",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("target", sa.Integer(), nullable=True),
        sa.Column("changed_at_ms", sa.BigInteger(), nullable=False),
    )
    messages = sa.table(
        "messages",
        sa.column("seq", sa.BigInteger()),
        sa.column("peer", sa.String()),
        sa.column("direction", sa.String()),
        sa.column("status", sa.String()),
        sa.column("shard32", sa.SmallInteger()),
    )
    conn = op.get_bind()
    after = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.seq, messages.c.peer)
            .where(
                messages.c.direction == "out",
                messages.c.status == "accepted",
                messages.c.shard32.is_(None),
                messages.c.seq > after,
            )
            .order_by(messages.c.seq)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        for seq, peer in rows:
            conn.execute(sa.update(messages).where(messages.c.seq == seq).values(shard32=shard_of(str(peer), 32)))
        after = int(rows[-1][0])
    op.create_index("ix_messages_out_shard", "messages", ["direction", "status", "shard32", "seq"])


def downgrade() -> None:
    op.drop_index("ix_messages_out_shard", table_name="messages")
    op.drop_table("shard_map")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("shard32")
