"""Message garbage collection: the rules (``GcPolicy``), one run (``MessageGc``) and the periodic scheduler.

``PUT /v1/services/message/gc`` (RPC ``messages.gc``) and the scheduler share ``MessageGc``: same rules, same
batches, one run at a time.  The scheduler waits a randomised interval (``WA_GC_INTERVAL_H`` ± ``WA_GC_JITTER``)
between runs, so that several coreapps on one database do not collect at the same moment, and skips a run when
the application settings ``db_garbagecollector_enable`` or ``garbagecollector_enable.messages`` are off.  An on
demand run ignores those settings: the operator asked for it.

GC never touches ``webhook_outbox``: a queued webhook carries its own body, so callbacks still pending (say the
webhook server has been down for days) are delivered whatever GC deletes.  Each run also deletes the idempotency
keys of sends older than ``shared.idempotency.TTL`` (they no longer count: a lookup ignores them anyway).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coreapp.storage.maintenance import GcCutoffs, MaintenanceStore
from coreapp.storage.settings import SettingsStore
from shared.config import MaintenanceSettings
from shared.idempotency import TTL
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.gc")


@dataclass(frozen=True)
class GcPolicy:
    """What GC deletes.

    - outbound ``read``/``failed`` (final: nothing more can happen to them) a week after their last change;
    - outbound ``delivered`` after 30 days: the recipient may have read receipts off, so ``read`` never comes;
    - inbound messages ``inbound`` after arrival (30 days by default, ``WA_GC_INBOUND_RETENTION_DAYS``): until
      then the business can still mark them read, and the network's redeliveries are deduplicated.
    ``accepted`` and ``sent`` outbound messages are never collected: they may still be sent or delivered.
    """

    outbound_final: timedelta = timedelta(days=7)
    outbound_delivered: timedelta = timedelta(days=30)
    inbound: timedelta = timedelta(days=30)
    idempotency_keys: timedelta = TTL
    batch: int = 500
    budget_s: float = 20.0
    """Time budget of an on-demand run (the RPC must answer); a periodic run goes on until done."""

    def cutoffs(self, now: datetime) -> GcCutoffs:
        return GcCutoffs(now - self.outbound_final, now - self.outbound_delivered, now - self.inbound)

    @classmethod
    def from_settings(cls, settings: MaintenanceSettings) -> GcPolicy:
        return cls(inbound=timedelta(days=settings.gc_inbound_retention_days))


@dataclass(frozen=True)
class GcResult:
    deleted: int
    complete: bool


class MessageGc:
    """Runs GC batches (one transaction each) until the garbage is gone or the time budget is spent."""

    def __init__(self, store: MaintenanceStore, policy: GcPolicy) -> None:
        self.policy = policy
        self._store = store
        self._lock = asyncio.Lock()
        self.runs = 0
        self.deleted = 0

    async def run(self, budget_s: float | None, *, pause_s: float = 0.0, reason: str = "on demand") -> GcResult:
        """One run at a time: a second caller waits for the first and then collects what is left.

        ``budget_s=None``: until done; ``pause_s`` between batches leaves the database to other work.
        """
        policy = self.policy
        async with self._lock:
            now = datetime.now(UTC)
            cutoffs = policy.cutoffs(now)
            deadline = None if budget_s is None else time.monotonic() + budget_s
            deleted, complete = await self._batches(
                lambda: self._store.gc_batch(cutoffs, policy.batch), deadline, pause_s
            )
            self.deleted += deleted
            keys = 0
            if complete:  # then the keys, within what is left of the budget
                keys_before = now - policy.idempotency_keys
                keys, complete = await self._batches(
                    lambda: self._store.gc_keys_batch(keys_before, policy.batch), deadline, pause_s
                )
            self.runs += 1
        log.info(
            "message GC (%s): deleted %d messages and %d idempotency keys (%s)",
            reason,
            deleted,
            keys,
            "complete" if complete else "budget spent",
        )
        return GcResult(deleted, complete)

    async def _batches(
        self, batch: Callable[[], Awaitable[int]], deadline: float | None, pause_s: float
    ) -> tuple[int, bool]:
        """Run ``batch`` until one comes back short (done) or ``deadline`` passes: (rows deleted, done)."""
        deleted = 0
        while deadline is None or time.monotonic() < deadline:
            count = await batch()
            deleted += count
            if count < self.policy.batch:
                return deleted, True
            if pause_s:
                await asyncio.sleep(pause_s)
        return deleted, False


class GcScheduler:
    """Runs ``MessageGc`` on a randomised interval, as a supervised task, while the settings allow it."""

    def __init__(
        self,
        gc: MessageGc,
        settings: SettingsStore,
        interval_s: float,
        jitter: float,
        *,
        pause_s: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        self._gc = gc
        self._settings = settings
        self.interval_s = interval_s
        self.jitter = jitter
        self._pause_s = pause_s
        self._rng = rng or random.Random()
        self.skipped = 0
        self.gate: Callable[[], bool] | None = None
        """Multiconnect: periodic runs only where this says so (the primary master)."""

    @classmethod
    def from_settings(cls, gc: MessageGc, settings_store: SettingsStore, settings: MaintenanceSettings) -> GcScheduler:
        return cls(gc, settings_store, settings.gc_interval_h * 3600.0, settings.gc_jitter)

    def next_delay(self) -> float:
        spread = self.interval_s * self.jitter
        return max(0.0, self._rng.uniform(self.interval_s - spread, self.interval_s + spread))

    def start(self, supervisor: TaskSupervisor) -> None:
        supervisor.spawn_forever("message-gc", self._cycle, restart_delay_s=0.0)

    async def _cycle(self) -> None:
        delay = self.next_delay()
        log.debug("next message GC in %.0f s", delay)
        await asyncio.sleep(delay)
        await self.run_once()

    async def run_once(self) -> GcResult | None:
        """A periodic run, unless ``db_garbagecollector_enable`` / ``garbagecollector_enable.messages`` are off
        (or, with multiconnect, this node is not the primary master: ``gate``)."""
        if self.gate is not None and not self.gate():
            return None
        app = await self._settings.get_application()
        if not (app.db_garbagecollector_enable and app.garbagecollector_enable.messages):
            self.skipped += 1
            log.debug("periodic message GC skipped: disabled in the application settings")
            return None
        return await self._gc.run(None, pause_s=self._pause_s, reason="periodic")
