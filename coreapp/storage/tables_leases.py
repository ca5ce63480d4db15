"""Table of the ``leases`` (migration 0004): who holds the master role and each shard, under which epoch."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table

metadata = MetaData()

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("epoch", BigInteger(), nullable=False),
    Column("expires_at_ms", BigInteger(), nullable=False),
    Column("acquired_at_ms", BigInteger(), nullable=False),
)
