"""One coreapp process of a multiconnect deployment: a master or a shard's owner, by lease (reference §5).

A master (``WA_MASTER_NODE=1``) races for the ``master`` lease: holding it, it is ``primary_master`` and serves
the ``master`` route (registration, settings, backup, shards, webhooks, GC); otherwise ``secondary_master``,
waiting.  Any other coreapp is a standby until it takes the lease of a shard that has no live owner: then it
serves that shard's route and connects to the network for it, until it loses the lease or the shard count changes.

What makes a role safe to act under:

- **the database decides** (``coreapp.storage.leases``): a lease is taken only once the previous holder's expired
  by the database's clock, and every take increments the epoch;
- **every transaction is fenced** while a role is held (``Database.fence``): it checks, in the same transaction,
  that this node still holds that epoch, so a node that lost its role can neither write nor read on;
- **self-fencing by the holder's own clock** (``LeaseKeeper.valid``): the chat connection checks it before every
  frame, so a process that was stopped past its lease and resumes sends nothing, and ``on_lost`` closes the
  connection before anyone may take over.

The node's state is published on the bus (retained, with the last will ``gone``): role, shard, count, epoch and
gateway status.  Webapps route by it and answer 1017 / 1018 at once when no node serves a call; the lease, not
the broker, still decides who may act.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.ha.lease import LeaseKeeper, LeaseTiming
from coreapp.storage.leases import Held, LeaseStore, StaleEpoch
from coreapp.storage.shard_map import ShardMap, ShardMapStore
from shared.bus.base import Bus, Payload
from shared.bus.contract.health import NodeRole
from shared.config import HaSettings
from shared.db.engine import Database
from shared.shards import ShardSlot
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.ha")

MASTER_LEASE = "master"
MASTER_ROUTE = "master"
STATE_EVERY_S = 1.0
"""How often the node state is published (also unchanged: webapps treat a node silent for a few seconds, e.g. a
stopped process whose broker connection is still open, as gone)."""


@dataclass(frozen=True)
class NodeHooks:
    """What the composition root does when this node's role changes."""

    become_primary: Callable[[], Awaitable[None]]
    stop_primary: Callable[[], Awaitable[None]]
    take_shard: Callable[[ShardSlot, Callable[[], bool]], Awaitable[None]]
    """Connect for the shard (the second argument: whether this node may still act, for the connection)."""
    drop_shard: Callable[[], Awaitable[None]]
    gateway_status: Callable[[], str]


def lease_timing(settings: HaSettings, overrides: Mapping[str, Any] | None) -> LeaseTiming:
    """The lease timing: ``WA_HA_*``, unless an admin set the On-Prem ``heartbeat_interval`` (renew every) or
    ``unhealthy_interval`` (the lease: a holder not heard from that long is replaced) in the application settings.
    A pair that leaves no room for a renewal inside the lease keeps the environment's timing (logged)."""
    ttl, renew, margin = settings.lease_ttl_s, settings.renew_every_s, settings.margin_s
    stored = overrides or {}
    heartbeat, unhealthy = stored.get("heartbeat_interval"), stored.get("unhealthy_interval")
    if isinstance(unhealthy, int | float) and not isinstance(unhealthy, bool):
        ttl = float(unhealthy)
    if isinstance(heartbeat, int | float) and not isinstance(heartbeat, bool):
        renew = float(heartbeat)
    margin = min(margin, ttl / 4)
    try:
        return LeaseTiming(ttl_s=ttl, renew_every_s=renew, margin_s=margin, acquire_every_s=min(1.0, renew))
    except ValueError:
        log.warning("heartbeat_interval %s / unhealthy_interval %s leave no room: using WA_HA_*", heartbeat, unhealthy)
        return LeaseTiming(
            ttl_s=settings.lease_ttl_s,
            renew_every_s=settings.renew_every_s,
            margin_s=settings.margin_s,
            acquire_every_s=min(1.0, settings.renew_every_s),
        )


async def _refuse(_conn: AsyncConnection) -> None:
    raise StaleEpoch("this node holds no role: nothing may be written")


class HaNode:
    def __init__(
        self,
        settings: HaSettings,
        db: Database,
        leases: LeaseStore,
        maps: ShardMapStore,
        bus: Bus,
        supervisor: TaskSupervisor,
        hooks: NodeHooks,
        overrides: Callable[[], Awaitable[Mapping[str, Any] | None]] | None = None,
    ) -> None:
        """``overrides``: the stored application settings (``heartbeat_interval``, ``unhealthy_interval``), read
        before every take, so a change applies from the next take of a lease."""
        self._overrides = overrides
        self._settings = settings
        self._db = db
        self._leases = leases
        self._maps = maps
        self._bus = bus
        self._supervisor = supervisor
        self._hooks = hooks
        self.node_id = settings.node_id
        self.timing = lease_timing(settings, None)
        self.is_master = settings.master
        self.role = NodeRole.SECONDARY_MASTER if settings.master else NodeRole.COREAPP
        self.slot: ShardSlot | None = None
        self.shard_map = ShardMap(1)
        self._keeper: LeaseKeeper | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._published: Payload | None = None
        # Counters for the stats (``/v1/stats/app``): roles taken and lost, and the epoch held now.
        self.acquired = 0
        self.lost = 0
        db.fence = _refuse  # nothing is written before a role is held

    # --- what the rest of the node asks -----------------------------------------------------------------------

    @property
    def primary(self) -> bool:
        return self.role is NodeRole.PRIMARY_MASTER and self.may_act()

    def may_act(self) -> bool:
        """Whether the role held now is still safe to act under, by this node's own clock."""
        keeper = self._keeper
        return keeper is not None and keeper.valid

    @property
    def epoch(self) -> int | None:
        keeper = self._keeper
        return keeper.held.epoch if keeper is not None and keeper.held is not None else None

    def state(self) -> Payload:
        """The retained node state webapps route by."""
        state: Payload = {
            "state": "up",
            "node": self.node_id,
            "role": self.role.value,
            "gateway_status": self._hooks.gateway_status() if self.slot is not None else "disconnected",
            "epoch": self.epoch,
        }
        if self.is_master:
            state.update(shards=self.shard_map.shards, changing=self.shard_map.changing)
        elif self.slot is not None and self.may_act():
            state.update(shard=self.slot.shard, shards=self.slot.shards)
        return state

    # --- lifecycle --------------------------------------------------------------------------------------------

    @property
    def route(self) -> str:
        """This node's own route (its stats, ``Placement.NODE``)."""
        return f"node/{self.node_id}"

    async def start(self) -> None:
        await self._bus.add_route(self.route)
        await self._bus.publish_state(self.state())
        loop = self._master_loop() if self.is_master else self._shard_loop()
        self._tasks = [
            self._supervisor.spawn(f"ha-{'master' if self.is_master else 'seat'}", loop),
            self._supervisor.spawn("ha-state", self._state_loop()),
        ]
        log.info("multiconnect node %s started as %s", self.node_id, self.role.value)

    async def stop(self) -> None:
        """Give the role up cleanly (the lease is released, so a successor need not wait for it to expire)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # --- master -----------------------------------------------------------------------------------------------

    async def _master_loop(self) -> None:
        while True:
            await self._refresh_timing()
            keeper = LeaseKeeper(
                self._leases,
                MASTER_LEASE,
                self.node_id,
                self.timing,
                on_acquired=self._became_primary,
                on_lost=self._lost_primary,
                supervisor=self._supervisor,
            )
            self._keeper = keeper
            held = await keeper.try_take()
            if held is not None:
                await keeper.hold(held)
            await asyncio.sleep(self.timing.acquire_every_s)

    async def _refresh_timing(self) -> None:
        if self._overrides is None:
            return
        try:
            self.timing = lease_timing(self._settings, await self._overrides())
        except DBAPIError as exc:
            log.warning("application settings not readable (%s): keeping the lease timing", type(exc).__name__)

    async def _became_primary(self, held: Held) -> None:
        self._db.fence = lambda conn: LeaseStore.fence_txn(conn, held)
        self.role = NodeRole.PRIMARY_MASTER
        self.acquired += 1
        await self._bus.add_route(MASTER_ROUTE)
        await self._hooks.become_primary()
        await self._publish()
        log.warning("%s is the primary master (epoch %d)", self.node_id, held.epoch)

    async def _lost_primary(self, held: Held) -> None:
        self._db.fence = _refuse
        self.role = NodeRole.SECONDARY_MASTER
        self.lost += 1
        try:
            await self._bus.remove_route(MASTER_ROUTE)
            await self._hooks.stop_primary()
        finally:
            await self._publish()
        log.warning("%s is no longer the primary master (epoch %d)", self.node_id, held.epoch)

    # --- shard owner ------------------------------------------------------------------------------------------

    async def _shard_loop(self) -> None:
        """As a standby: look for a shard without a live owner, take it, serve it until it is lost or the shard
        count changes, then look again."""
        while True:
            try:
                current = await self._maps.get()
            except DBAPIError as exc:
                log.warning("shard map not readable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(self.timing.acquire_every_s)
                continue
            self.shard_map = current
            await self._refresh_timing()
            if not current.changing:
                for shard in range(current.shards):
                    if await self._serve_if_free(ShardSlot(shard, current.shards)):
                        break
            await asyncio.sleep(self.timing.acquire_every_s)

    async def _serve_if_free(self, slot: ShardSlot) -> bool:
        keeper = LeaseKeeper(
            self._leases,
            slot.lease,
            self.node_id,
            self.timing,
            on_acquired=lambda held: self._took_shard(slot, held),
            on_lost=lambda held: self._lost_shard(slot, held),
            supervisor=self._supervisor,
        )
        self._keeper = keeper
        held = await keeper.try_take()
        if held is None:
            return False
        hold = self._supervisor.spawn(f"ha-hold-{slot.lease}", keeper.hold(held))
        watch = self._supervisor.spawn(f"ha-watch-{slot.lease}", self._watch_map(slot))
        try:
            await asyncio.wait({hold, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, hold):  # cancelling the hold gives the lease back cleanly
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return True

    async def _watch_map(self, slot: ShardSlot) -> None:
        """Returns when the shard count is being changed (or was): the owner must give its shard up."""
        while True:
            await asyncio.sleep(self.timing.acquire_every_s)
            try:
                current = await self._maps.get()
            except DBAPIError:
                continue  # the lease keeper decides what a database outage means
            self.shard_map = current
            if current.changing or current.shards != slot.shards:
                log.warning("shard count changing (%d → %s): giving %s up", slot.shards, current.target, slot.lease)
                return

    async def _took_shard(self, slot: ShardSlot, held: Held) -> None:
        self._db.fence = lambda conn: LeaseStore.fence_txn(conn, held)
        self.slot = slot
        self.acquired += 1
        await self._bus.add_route(slot.route)
        await self._hooks.take_shard(slot, self.may_act)
        await self._publish()
        log.warning("%s owns shard %d of %d (epoch %d)", self.node_id, slot.shard, slot.shards, held.epoch)

    async def _lost_shard(self, slot: ShardSlot, held: Held) -> None:
        self._db.fence = _refuse
        self.lost += 1
        try:
            await self._hooks.drop_shard()  # the network connection first: the successor may connect soon
            await self._bus.remove_route(slot.route)
        finally:
            self.slot = None
            await self._publish()
        log.warning("%s gave shard %d of %d up (epoch %d)", self.node_id, slot.shard, slot.shards, held.epoch)

    # --- state ------------------------------------------------------------------------------------------------

    async def _state_loop(self) -> None:
        while True:
            await asyncio.sleep(STATE_EVERY_S)
            if self.is_master:
                with contextlib.suppress(DBAPIError):
                    self.shard_map = await self._maps.get()
            await self._publish(always=True)

    async def _publish(self, *, always: bool = False) -> None:
        state = self.state()
        if always or state != self._published:
            self._published = state
            await self._bus.publish_state(state)
