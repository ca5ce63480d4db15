"""Holding one lease: take it when free, renew it, and give up the role *before* anyone may take it over.

The database decides who holds a lease (``coreapp.storage.leases``); this keeper only has to stay on the safe
side of that decision with its own monotonic clock.  A renewal that starts at local time ``t`` extends the lease
to at least ``t + ttl`` by the database's clock (the database evaluates the expiry after the request left), so
the holder may act until ``t + ttl - margin`` and must stop there unless a later renewal succeeded: ``on_lost``
runs no later than that, whether the database answered "not yours", failed, or never answered.  A successor's
take-over only succeeds once the database's clock passed the expiry, i.e. after the old holder stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from coreapp.storage.leases import Held, LeaseStore
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.ha")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """``ttl_s``: how long a renewal holds; renewals every ``renew_every_s``; ``margin_s`` of safety before the
    expiry (for clock rate drift and the time ``on_lost`` takes to close the connection)."""

    ttl_s: float = 6.0
    renew_every_s: float = 1.5
    margin_s: float = 1.5
    acquire_every_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.ttl_s - self.margin_s:
            raise ValueError("renewals must come well inside the lease: renew_every_s < ttl_s - margin_s")


class LeaseKeeper:
    """Keeps the lease ``name`` for ``owner`` while ``run`` runs: ``on_acquired`` when it is taken (with the new
    epoch), ``on_lost`` when it must be given up; then it tries to take it again."""

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        owner: str,
        timing: LeaseTiming,
        *,
        on_acquired: Callable[[Held], Awaitable[None]],
        on_lost: Callable[[Held], Awaitable[None]],
        supervisor: TaskSupervisor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._supervisor = supervisor
        self.name = name
        self.owner = owner
        self._timing = timing
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._clock = clock
        self.held: Held | None = None
        self._valid_until = 0.0
        self.acquisitions = 0
        self.losses = 0

    @property
    def valid(self) -> bool:
        """Whether the holder may still act (false as soon as the safe part of the lease has run out)."""
        return self.held is not None and self._clock() < self._valid_until

    async def run(self) -> None:
        """Until cancelled: take the lease, keep it, give it up when it cannot be kept, and try again."""
        while True:
            held = await self.try_take()
            if held is None:
                await asyncio.sleep(self._timing.acquire_every_s)
                continue
            await self.hold(held)

    async def try_take(self) -> Held | None:
        """One attempt to take the lease; ``on_acquired`` has run when it returns the lease."""
        started = self._clock()
        try:
            held = await self._store.acquire(self.name, self.owner, int(self._timing.ttl_s * 1000))
        except DBAPIError as exc:
            log.warning("lease %s: could not ask the database (%s)", self.name, type(exc).__name__)
            return None
        if held is None:
            return None
        self.held, self._valid_until = held, started + self._timing.ttl_s - self._timing.margin_s
        self.acquisitions += 1
        log.info("lease %s taken by %s (epoch %d)", self.name, self.owner, held.epoch)
        try:
            await self._on_acquired(held)
        except BaseException:
            self.held = None
            await self._give_back(held)
            raise
        return held

    async def hold(self, held: Held) -> None:
        """Keep ``held`` until it is lost (``on_lost`` has run); cancelled, give it back (``on_lost``, then a
        release, so a successor need not wait for the expiry) and re-raise."""
        try:
            await self._keep(held)
        finally:
            last, self.held = self.held, None
            if last is not None:
                await self._give_back(last)

    async def _keep(self, held: Held) -> None:
        """Renew until the lease is lost or its safe part ran out; then ``on_lost``."""
        timing, ttl_ms = self._timing, int(self._timing.ttl_s * 1000)
        next_renewal = self._clock() + timing.renew_every_s
        while True:
            await asyncio.sleep(max(0.0, min(next_renewal, self._valid_until) - self._clock()))
            left = self._valid_until - self._clock()
            if left <= 0:
                log.error("lease %s: not renewed in time; giving the role up (epoch %d)", self.name, held.epoch)
                break
            started = self._clock()
            try:
                renewed = await self._bounded(f"lease-renew:{self.name}", self._store.renew(held, ttl_ms), left)
            except (DBAPIError, TimeoutError) as exc:
                log.warning("lease %s: renewal failed (%s); %.1fs of it left", self.name, type(exc).__name__, left)
                next_renewal = self._clock() + min(timing.renew_every_s, 0.5)
                continue
            if not renewed:
                log.error("lease %s: taken by another node; giving the role up (epoch %d)", self.name, held.epoch)
                break
            self._valid_until = started + timing.ttl_s - timing.margin_s
            next_renewal = started + timing.renew_every_s
        self.held = None
        self.losses += 1
        await self._on_lost(held)

    async def _give_back(self, held: Held) -> None:
        """A clean stop: stop acting first, then release so a successor need not wait for the expiry."""
        try:
            await self._on_lost(held)
        finally:
            try:
                await self._bounded(f"lease-release:{self.name}", self._store.release(held), self._timing.margin_s)
            except (DBAPIError, TimeoutError) as exc:
                log.warning("lease %s: not released (%s); it expires by itself", self.name, type(exc).__name__)

    async def _bounded(self, name: str, call: Coroutine[Any, Any, T], limit_s: float) -> T:
        """``call``'s result, or ``TimeoutError`` after ``limit_s``.

        A database transaction is never abandoned half-way (``Database.run`` finishes it even when its caller is
        cancelled), so a plain timeout would wait for it: the call runs as its own task, which may finish after
        we stopped waiting."""
        task = self._supervisor.spawn(name, call)
        done, _ = await asyncio.wait({task}, timeout=max(limit_s, 0.0))
        if not done:
            raise TimeoutError
        result: T = task.result()
        return result
