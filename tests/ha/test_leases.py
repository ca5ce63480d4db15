"""Leases with a fencing epoch (issue 11 item 2), on every backend: the database's clock decides, a take-over
increments the epoch, a stale holder's renewals and fenced writes are refused, and a holder that cannot renew
gives its role up before the lease expires."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import text

from coreapp.ha.lease import LeaseKeeper, LeaseTiming
from coreapp.storage.leases import Held, LeaseStore, StaleEpoch
from shared.config import DbEngine, DbSettings
from shared.db.engine import Database
from shared.tasks import TaskSupervisor

TTL_MS = 600


async def _fence(db: Database, held: Held) -> None:
    await db.run("test.fenced_write", lambda conn: LeaseStore.fence_txn(conn, held))


async def test_one_holder_and_a_take_over_increments_the_epoch(db: Database) -> None:
    store = LeaseStore(db)
    a = await store.acquire("shard:1", "node-a", TTL_MS)
    assert a == Held("shard:1", "node-a", 1)
    assert await store.acquire("shard:1", "node-b", TTL_MS) is None  # held: nobody else
    assert await store.renew(a, TTL_MS)
    await _fence(db, a)

    await asyncio.sleep(TTL_MS / 1000 + 0.3)  # a stops renewing; the database's clock passes the expiry
    b = await store.acquire("shard:1", "node-b", TTL_MS)
    assert b == Held("shard:1", "node-b", 2)
    assert not await store.renew(a, TTL_MS)  # the old holder cannot come back
    with pytest.raises(StaleEpoch):
        await _fence(db, a)
    await _fence(db, b)

    assert await store.release(b)
    c = await store.acquire("shard:1", "node-a", TTL_MS)  # released: free at once, and a new epoch
    assert c == Held("shard:1", "node-a", 3)
    with pytest.raises(StaleEpoch):
        await _fence(db, a)  # same owner, older epoch: still refused


async def test_host_clocks_decide_nothing(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LeaseStore(db)
    held = await store.acquire("master", "node-a", 60_000)
    assert held is not None
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)  # this host's clock jumps 70 years ahead
    assert await store.acquire("master", "node-b", 60_000) is None
    row = await store.get("master")
    assert row is not None and not row.expired and row.owner == "node-a"
    assert abs(row.now_ms / 1000 - time.monotonic()) > 0  # the row's "now" is the database's, not ours


async def test_only_one_of_many_racing_nodes_wins(db: Database) -> None:
    store = LeaseStore(db)
    results = await asyncio.gather(*(store.acquire("shard:7", f"node-{i}", 5_000) for i in range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].epoch == 1


async def _hold_write_lock(settings: DbSettings, db: Database) -> tuple[Database, asyncio.Event, asyncio.Task[None]]:
    """Another connection keeps the lease row locked (SQLite: the database), so renewals hang."""
    other = await Database.connect(settings)
    locked, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with other.engine.connect() as conn:
            await conn.begin()  # on SQLite: BEGIN IMMEDIATE, the database's write lock
            if settings.engine is not DbEngine.SQLITE:
                await conn.execute(text("SELECT name FROM leases FOR UPDATE"))
            locked.set()
            await release.wait()
            await conn.rollback()

    task = asyncio.ensure_future(hold())
    await asyncio.wait_for(locked.wait(), 10)
    return other, release, task


async def test_a_holder_that_cannot_renew_gives_up_before_the_lease_expires(backend: DbSettings, db: Database) -> None:
    store = LeaseStore(db)
    timing = LeaseTiming(ttl_s=2.0, renew_every_s=0.3, margin_s=0.5, acquire_every_s=0.1)
    events: list[tuple[str, int, float]] = []
    acquired = asyncio.Event()
    lost = asyncio.Event()

    async def on_acquired(held: Held) -> None:
        events.append(("acquired", held.epoch, time.monotonic()))
        acquired.set()

    async def on_lost(held: Held) -> None:
        events.append(("lost", held.epoch, time.monotonic()))
        lost.set()

    supervisor = TaskSupervisor("test-leases")
    keeper = LeaseKeeper(
        store, "shard:2", "node-a", timing, on_acquired=on_acquired, on_lost=on_lost, supervisor=supervisor
    )
    task = asyncio.ensure_future(keeper.run())
    try:
        await asyncio.wait_for(acquired.wait(), 10)
        await asyncio.sleep(1.0)  # renewals keep it past the first ttl - margin
        assert keeper.valid and not lost.is_set()
        row = await store.get("shard:2")
        assert row is not None
        expires_in_s = (row.expires_at_ms - row.now_ms) / 1000

        other, release, holder = await _hold_write_lock(backend, db)
        stalled_at = time.monotonic()
        await asyncio.wait_for(lost.wait(), 10)
        gave_up_after = events[-1][2] - stalled_at
        assert not keeper.valid
        # The role went at the latest at expiry minus the margin, as this node measured it.
        assert gave_up_after <= expires_in_s - timing.margin_s + 0.3, (gave_up_after, expires_in_s)
        release.set()
        await holder
        await other.close()
        # The lease lapses in the database; the keeper takes it again under a new epoch.
        await asyncio.wait_for(_until(lambda: keeper.acquisitions == 2), 10)
        assert [e[:2] for e in events] == [("acquired", 1), ("lost", 1), ("acquired", 2)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await supervisor.close(10)
    assert events[-1][:2] == ("lost", 2)  # a clean stop gives the role up, then releases the lease
    row = await store.get("shard:2")
    assert row is not None and row.expired


async def _until(check: object) -> None:
    assert callable(check)
    while not check():
        await asyncio.sleep(0.05)
