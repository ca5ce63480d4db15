"""RPC methods for operations: ``stats.app``, ``stats.db``, ``support.get`` and ``messages.gc``.

Stats travel as the §2.11 JSON map or as Prometheus text (``format: prometheus``) so webapp relays them
without knowing the metric names.  ``messages.gc`` runs batches until the garbage is gone or its time budget
(well inside the RPC timeout) is spent, and says which: the caller may simply call again.  The rules and the
batching live in ``coreapp.maintenance.gc``, shared with the periodic GC.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from dataclasses import replace

from prometheus_client.metrics_core import Metric

from coreapp.api.registry import RpcRegistry
from coreapp.ha.node import HaNode
from coreapp.maintenance.disk import DiskGuard
from coreapp.maintenance.gc import MessageGc
from coreapp.scope import CurrentChat
from coreapp.stats import AppStatsSources, app_families, db_families
from coreapp.storage.maintenance import MaintenanceStore
from coreapp.webhooks.dispatcher import WebhookDispatcher
from shared.bus.contract import messages, ops
from shared.bus.contract.health import GatewayStatus
from shared.bus.rpc import Empty
from shared.config import Settings
from shared.db.engine import Database
from shared.metrics import families_to_json, prometheus_text

log = logging.getLogger("openprem.coreapp.ops")

__all__ = ["OpsApi", "software_version"]


def software_version() -> str:
    try:
        return importlib.metadata.version("openprem")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class OpsApi:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        store: MaintenanceStore,
        dispatcher: WebhookDispatcher,
        chat: CurrentChat,
        message_gc: MessageGc,
        disk: DiskGuard,
        *,
        node: HaNode | None = None,
    ) -> None:
        """``node``: multiconnect (its role and lease counters are in the stats)."""
        self._settings = settings
        self._db = db
        self._store = store
        self._dispatcher = dispatcher
        self._chat = chat
        self._message_gc = message_gc
        self._sources = AppStatsSources(db, dispatcher, chat, disk=disk, message_gc=message_gc)
        if node is not None:
            self._sources = replace(self._sources, role=lambda: node.role, ha=node)
        # Finish well before webapp gives up on the RPC, so the answer (and the count) reaches the client.
        self._gc_budget_s = min(message_gc.policy.budget_s, settings.bus.rpc_timeout_s / 2)
        self._started = time.monotonic()

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(ops.STATS_APP, self.stats_app)
        registry.add(ops.STATS_DB, self.stats_db)
        registry.add(ops.SUPPORT, self.support)
        registry.add(messages.GC, self.gc)

    async def stats_app(self, request: ops.StatsQuery) -> ops.Stats:
        dispatcher = self._dispatcher
        families = app_families(
            self._sources,
            await dispatcher.queue_size(),
            self._uptime(),
            oldest_pending_age_s=await dispatcher.oldest_pending_age_s(),
            dead_letters=await dispatcher.dead.count(),
        )
        return _stats(request, families)

    async def stats_db(self, request: ops.StatsQuery) -> ops.Stats:
        tables = await self._store.table_counts()
        return _stats(request, db_families(self._db, tables, await self._store.message_counts()))

    async def support(self, _request: Empty) -> ops.Support:
        """Versions, uptime, gateway status, backends and row counts — nothing secret (no hosts, users, keys)."""
        status = self._chat.gateway_status()
        return ops.Support(
            version=software_version(),
            client_version=self._settings.chat.client_version,
            python=platform.python_version(),
            uptime_s=round(self._uptime(), 3),
            gateway_status=status,
            registered=status is not GatewayStatus.UNREGISTERED,
            db_engine=self._settings.db.engine,
            bus=self._settings.bus.kind,
            counts=await self._store.table_counts(),
        )

    async def gc(self, _request: Empty) -> messages.GcResult:
        """One run at a time (shared with the periodic GC): a second caller waits, then collects what is left."""
        result = await self._message_gc.run(self._gc_budget_s)
        return messages.GcResult(deleted=result.deleted, complete=result.complete)

    def _uptime(self) -> float:
        return time.monotonic() - self._started


def _stats(request: ops.StatsQuery, families: list[Metric]) -> ops.Stats:
    if request.format == "prometheus":
        return ops.Stats(text=prometheus_text(families))
    return ops.Stats(metrics=families_to_json(families))
