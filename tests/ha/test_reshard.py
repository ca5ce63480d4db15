"""Changing the shard count (``coreapp.ha.reshard.Resharder``) on every backend: the change waits until no lease
of the old count is live by the database's clock (an owner that cannot give its shard up is waited out to its
expiry), a second change meanwhile is refused with 403 (ACCESS_DENIED), and the new count is written only then."""

from __future__ import annotations

import asyncio
import time

import pytest

from coreapp.ha.reshard import Resharder
from coreapp.storage.leases import LeaseStore
from coreapp.storage.shard_map import ShardMap, ShardMapStore
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.shards import ShardSlot

TTL_MS = 1500


async def test_a_change_waits_out_a_stuck_owner_and_refuses_a_second_one(db: Database) -> None:
    leases, maps = LeaseStore(db), ShardMapStore(db)
    assert await maps.set_offline(2)
    stuck = await leases.acquire(ShardSlot(0, 2).lease, "core-1", TTL_MS)  # never renewed, never released
    gone = await leases.acquire(ShardSlot(1, 2).lease, "core-2", TTL_MS)
    assert stuck is not None and gone is not None
    await leases.release(gone)  # this owner gave its shard up at once
    resharder = Resharder(maps, leases, give_up_s=10.0, poll_s=0.05)

    started = time.monotonic()
    change = asyncio.ensure_future(resharder.change(4))
    await asyncio.sleep(0.3)
    assert not change.done(), "the change did not wait for the live lease"
    assert await maps.get() == ShardMap(2, target=4)
    with pytest.raises(ApiError) as second:
        await resharder.change(8)
    assert second.value.code is ErrorCode.ACCESS_DENIED and second.value.code.http_status == 403
    assert await change == 4
    assert time.monotonic() - started >= TTL_MS / 1000 - 0.35, "finished before the stuck lease expired"
    assert await maps.get() == ShardMap(4)
    assert await resharder.change(4) == 4  # the same count again: nothing to do, no 403


async def test_a_change_that_cannot_finish_is_undone(db: Database) -> None:
    leases, maps = LeaseStore(db), ShardMapStore(db)
    assert await maps.set_offline(1)
    assert await leases.acquire(ShardSlot(0, 1).lease, "core-1", 60_000) is not None
    with pytest.raises(TimeoutError):
        await Resharder(maps, leases, give_up_s=0.5, poll_s=0.05).change(2)
    assert await maps.get() == ShardMap(1), "an abandoned change must not block the next one"
    with pytest.raises(ApiError) as bad:
        await Resharder(maps, leases, give_up_s=0.5).change(3)
    assert bad.value.code is ErrorCode.INVALID_PARAMETER
