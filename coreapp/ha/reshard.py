"""Changing the shard count (``POST /v1/account/shards``, reference §5.3), without losing or doubling a message.

Everything a shard owner works from lives in the shared database (the pending messages with their stored
envelopes, the Signal sessions, the webhook outbox), so a change only has to make sure that no two owners ever
serve one peer: the primary master marks the change (``shard_map.target``; a second change meanwhile is refused
with 403), every owner sees it within a second and gives its lease up (its connection closed first), and once
every lease of the old count is free by the database's clock the new count is written; standbys then take the
new shards' leases and connect.  Messages accepted meanwhile wait in the database: a send answers 1018 only while
no owner serves its recipient, and the client retries.
"""

from __future__ import annotations

import asyncio
import logging

from coreapp.storage.leases import LeaseStore
from coreapp.storage.shard_map import ShardMapStore
from shared.errors import ApiError, ErrorCode
from shared.shards import SHARD_COUNTS

log = logging.getLogger("openprem.coreapp.ha")

SHARD_LEASE_PREFIX = "shard-"


def live_shard_leases(rows: list[tuple[str, bool]], shards: int | None = None) -> list[str]:
    suffix = f"-of-{shards}" if shards is not None else ""
    return [
        name for name, expired in rows if name.startswith(SHARD_LEASE_PREFIX) and name.endswith(suffix) and not expired
    ]


class Resharder:
    """The primary master's part of a change (``account.set_shards``)."""

    def __init__(self, maps: ShardMapStore, leases: LeaseStore, *, give_up_s: float, poll_s: float = 0.2) -> None:
        self._maps = maps
        self._leases = leases
        self._give_up_s = give_up_s
        self._poll_s = poll_s

    async def change(self, target: int) -> int:
        """Move to ``target`` shards; the count afterwards.  403 while another change is under way."""
        if target not in SHARD_COUNTS:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "shards must be one of 1, 2, 4, 8, 16, 32")
        before = await self._maps.begin_change(target)
        if before is None:
            raise ApiError(
                ErrorCode.ACCESS_DENIED, "a shard change is under way: server temporarily unavailable, retry"
            )
        if before.shards == target:
            await self._maps.finish_change(target)
            return target
        log.warning("shard count %d → %d: waiting for the owners to give their shards up", before.shards, target)
        try:
            async with asyncio.timeout(self._give_up_s):
                while live := await self._live(before.shards):
                    log.info("shard change: still held: %s", ", ".join(live))
                    await asyncio.sleep(self._poll_s)
        except BaseException:
            await self._maps.abort_change(target)
            raise
        await self._maps.finish_change(target)
        log.warning("shard count is now %d", target)
        return target

    async def _live(self, shards: int) -> list[str]:
        rows = await self._leases.all()
        return live_shard_leases([(row.name, row.expired) for row in rows], shards)
