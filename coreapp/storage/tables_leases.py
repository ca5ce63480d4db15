"""Tables of the ``leases`` (migration 0004: who holds the master role and each shard, under which epoch) and the
``shard_map`` (migration 0007: how many shards the number has, and the count a change is moving it to)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table

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

shard_map = Table(
    "shard_map",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=False),
    Column("shards", Integer(), nullable=False),
    Column("target", Integer(), nullable=True),
    Column("changed_at_ms", BigInteger(), nullable=False),
)
