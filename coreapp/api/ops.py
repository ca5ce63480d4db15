"""RPC methods for operations: ``stats.app``, ``stats.db``, ``support.get`` and ``messages.gc``.

Stats travel as the §2.11 JSON map or as Prometheus text (``{"format": "prometheus"}``) so webapp relays them
without knowing the metric names.  ``messages.gc`` runs batches until the garbage is gone or its time budget
(well inside the RPC timeout) is spent, and says which: the caller may simply call again.  The rules and the
batching live in ``coreapp.maintenance.gc``, shared with the periodic GC.
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from collections.abc import Callable

from coreapp.api.handlers import Handler
from coreapp.maintenance.disk import DiskGuard
from coreapp.maintenance.gc import GcPolicy, MessageGc
from coreapp.models import GatewayStatus
from coreapp.stats import AppStatsSources, ChatView, app_families, db_families
from coreapp.storage.maintenance import MaintenanceStore
from coreapp.webhooks.dispatcher import WebhookDispatcher
from shared.bus.base import Payload
from shared.config import Settings
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.metrics import families_to_json, prometheus_text

log = logging.getLogger("openprem.coreapp.ops")

__all__ = ["FORMATS", "GcPolicy", "OpsApi", "software_version"]

FORMATS = frozenset({"json", "prometheus"})


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
        dispatcher: WebhookDispatcher,
        gateway_status: Callable[[], GatewayStatus],
        chat: Callable[[], ChatView | None],
        gc_policy: GcPolicy | None = None,
        *,
        message_gc: MessageGc | None = None,
        disk: DiskGuard | None = None,
    ) -> None:
        self._settings = settings
        self._db = db
        self._store = MaintenanceStore(db)
        self._dispatcher = dispatcher
        self._message_gc = message_gc or MessageGc(db, gc_policy or GcPolicy.from_settings(settings.maintenance))
        self._sources = AppStatsSources(
            db,
            lambda: dispatcher.stats,
            gateway_status,
            chat,
            disk=(lambda: disk.states) if disk is not None else None,
            message_gc=self._message_gc,
        )
        self._gateway_status = gateway_status
        # Finish well before webapp gives up on the RPC, so the answer (and the count) reaches the client.
        self._gc_budget_s = min(self._message_gc.policy.budget_s, settings.bus.rpc_timeout_s / 2)
        self._started = time.monotonic()

    def routes(self) -> dict[str, Handler]:
        return {
            "stats.app": self.stats_app,
            "stats.db": self.stats_db,
            "support.get": self.support,
            "messages.gc": self.gc,
        }

    async def stats_app(self, payload: Payload) -> Payload:
        fmt = _format(payload)
        families = app_families(self._sources, await self._dispatcher.queue_size(), self._uptime())
        return {"text": prometheus_text(families)} if fmt == "prometheus" else {"metrics": families_to_json(families)}

    async def stats_db(self, payload: Payload) -> Payload:
        fmt = _format(payload)
        tables = await self._store.table_counts()
        families = db_families(self._db, tables, await self._store.message_counts())
        return {"text": prometheus_text(families)} if fmt == "prometheus" else {"metrics": families_to_json(families)}

    async def support(self, _payload: Payload) -> Payload:
        """Versions, uptime, gateway status, backends and row counts — nothing secret (no hosts, users, keys)."""
        status = self._gateway_status()
        return {
            "version": software_version(),
            "client_version": self._settings.chat.client_version,
            "python": platform.python_version(),
            "uptime_s": round(self._uptime(), 3),
            "gateway_status": status.value,
            "registered": status is not GatewayStatus.UNREGISTERED,
            "db_engine": self._settings.db.engine.value,
            "bus": self._settings.bus.kind.value,
            "counts": await self._store.table_counts(),
        }

    async def gc(self, _payload: Payload) -> Payload:
        """One run at a time (shared with the periodic GC): a second caller waits, then collects what is left."""
        result = await self._message_gc.run(self._gc_budget_s)
        return {"deleted": result.deleted, "complete": result.complete}

    def _uptime(self) -> float:
        return time.monotonic() - self._started


def _format(payload: Payload) -> str:
    fmt = payload.get("format", "json")
    if fmt not in FORMATS:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "format must be json or prometheus")
    return str(fmt)
