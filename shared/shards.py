"""Multiconnect shards: which shard of a number serves a peer (reference §5.3, ``shard = hash(recipient) % N``).

The hash is fixed here for good, because the network (chatd) and every coreapp must agree on it and a change
would move every conversation: the first 8 bytes of SHA-256 over the peer's wa_id (its digits, ASCII), read as
an unsigned big-endian integer, modulo the shard count.  Shard counts are powers of two, so going from N to 2N
shards splits each shard in two (a peer of shard ``s`` lands on ``s`` or ``s + N``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SHARD_COUNTS = (1, 2, 4, 8, 16, 32)
SHARD_SPACE = SHARD_COUNTS[-1]
"""Every count divides it: ``shard_of(p, n) == shard_of(p, SHARD_SPACE) % n``, so a row can store the latter."""


def shard_of(wa_id: str, shards: int) -> int:
    """The shard (``0 … shards-1``) that serves the peer ``wa_id`` (a leading ``+`` is ignored)."""
    if shards not in SHARD_COUNTS:
        raise ValueError(f"shard count must be one of {SHARD_COUNTS}, not {shards}")
    digest = hashlib.sha256(wa_id.lstrip("+").encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % shards


@dataclass(frozen=True, slots=True)
class ShardSlot:
    """One shard of a count: what a shard owner serves (``shard`` of ``shards``)."""

    shard: int
    shards: int

    def __post_init__(self) -> None:
        if self.shards not in SHARD_COUNTS or not 0 <= self.shard < self.shards:
            raise ValueError(f"no shard {self.shard} of {self.shards}")

    @property
    def route(self) -> str:
        """Its bus route (``shared.bus``): requests for its peers are sent there."""
        return f"shard/{self.shard}"

    @property
    def lease(self) -> str:
        """Its lease's name: the count is part of it, so a change of count starts every shard afresh."""
        return f"shard-{self.shard}-of-{self.shards}"

    def serves(self, wa_id: str) -> bool:
        return shard_of(wa_id, self.shards) == self.shard
