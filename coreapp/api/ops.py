"""RPC methods for operations: ``stats.app``, ``stats.db``, ``support.get`` and ``messages.gc``.

Stats travel as the §2.11 JSON map or as Prometheus text (``{"format": "prometheus"}``) so webapp relays them
without knowing the metric names.  ``messages.gc`` runs batches until the garbage is gone or its time budget
(well inside the RPC timeout) is spent, and says which: the caller may simply call again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from coreapp.api.handlers import Handler
from coreapp.models import GatewayStatus
from coreapp.stats import AppStatsSources, ChatView, app_families, db_families
from coreapp.storage.maintenance import GcCutoffs, MaintenanceStore
from coreapp.webhooks.dispatcher import WebhookDispatcher
from shared.bus.base import Payload
from shared.config import Settings
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.metrics import families_to_json, prometheus_text

log = logging.getLogger("openprem.coreapp.ops")

FORMATS = frozenset({"json", "prometheus"})


@dataclass(frozen=True)
class GcPolicy:
    """What ``messages.gc`` deletes (issue 5's periodic GC refines this).

    - outbound ``read``/``failed`` (final: nothing more can happen to them) a week after their last change;
    - outbound ``delivered`` after 30 days: the recipient may have read receipts off, so ``read`` never comes;
    - inbound messages 30 days after arrival (the network redelivers within days, so dedup needs no more).
    ``accepted`` and ``sent`` outbound messages are never collected: they may still be sent or delivered.
    """

    outbound_final: timedelta = timedelta(days=7)
    outbound_delivered: timedelta = timedelta(days=30)
    inbound: timedelta = timedelta(days=30)
    batch: int = 500
    budget_s: float = 20.0

    def cutoffs(self, now: datetime) -> GcCutoffs:
        return GcCutoffs(now - self.outbound_final, now - self.outbound_delivered, now - self.inbound)


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
    ) -> None:
        self._settings = settings
        self._db = db
        self._store = MaintenanceStore(db)
        self._dispatcher = dispatcher
        self._sources = AppStatsSources(db, lambda: dispatcher.stats, gateway_status, chat)
        self._gateway_status = gateway_status
        policy = gc_policy or GcPolicy()
        # Finish well before webapp gives up on the RPC, so the answer (and the count) reaches the client.
        self._gc_policy = dataclasses.replace(policy, budget_s=min(policy.budget_s, settings.bus.rpc_timeout_s / 2))
        self._gc_lock = asyncio.Lock()
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
        """One run at a time: a second caller waits for the first and then collects what is left."""
        policy = self._gc_policy
        async with self._gc_lock:
            cutoffs = policy.cutoffs(datetime.now(UTC))
            deadline = time.monotonic() + policy.budget_s
            deleted, complete = 0, False
            while time.monotonic() < deadline:
                batch = await self._store.gc_batch(cutoffs, policy.batch)
                deleted += batch
                if batch < policy.batch:
                    complete = True
                    break
        log.info("message GC: deleted %d messages (%s)", deleted, "complete" if complete else "time budget spent")
        return {"deleted": deleted, "complete": complete}

    def _uptime(self) -> float:
        return time.monotonic() - self._started


def _format(payload: Payload) -> str:
    fmt = payload.get("format", "json")
    if fmt not in FORMATS:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "format must be json or prometheus")
    return str(fmt)
