"""coreapp's metrics as Prometheus families: ``/v1/stats/app`` (in memory) and ``/v1/stats/db`` (DB side).

Families are built on request from the objects that already keep the numbers (the webhook dispatcher, the
database's transaction timings, the chat connection, the sender) instead of a second set of counters that
could drift from them.  Counters held by the chat part restart at zero after a (re-)registration rebuilds it;
Prometheus ``rate()`` handles such resets.  Labels are bounded: statuses, kinds, transaction names — never a
phone number or a message id (dependencies §5.7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric

from coreapp.models import MessageStatus
from coreapp.webhooks.dispatcher import DispatcherStats
from shared.bus.contract.health import GatewayStatus, NodeRole
from shared.db.engine import Database
from shared.shards import ShardSlot

DB_LABEL = "coreapp"
"""``db`` label of ``db_request_duration_us`` (the original named its stores, e.g. ``messageStore``)."""

# Transactions whose count is an exact event count (one transaction per event).
TXN_RECEIVED = "inbound.receive"
TXN_UNDECRYPTABLE = "inbound.undecryptable"

RECEIPT_STATUSES = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED)


def single_node_role() -> NodeRole:
    """One coreapp per number, no standby (no multiconnect): it does the master's work too."""
    return NodeRole.PRIMARY_MASTER


class HaCounts(Protocol):
    """``coreapp.ha.HaNode``, as the stats see it."""

    @property
    def acquired(self) -> int: ...

    @property
    def lost(self) -> int: ...

    @property
    def epoch(self) -> int | None: ...

    @property
    def slot(self) -> ShardSlot | None: ...


class _Generation(Protocol):
    @property
    def generation(self) -> int: ...


class _SenderCounts(Protocol):
    @property
    def sent(self) -> int: ...

    @property
    def failed(self) -> int: ...


class _ReceiptCounts(Protocol):
    @property
    def applied(self) -> Mapping[MessageStatus, int]: ...


class ChatView(Protocol):
    """What the stats read of the chat part (``coreapp.scope.ChatScope``)."""

    @property
    def connection(self) -> _Generation: ...

    @property
    def sender(self) -> _SenderCounts: ...

    @property
    def receipts(self) -> _ReceiptCounts: ...


class ChatSource(Protocol):
    """The chat part in use (``coreapp.scope.CurrentChat``)."""

    @property
    def scope(self) -> ChatView | None: ...

    def gateway_status(self) -> GatewayStatus: ...


class StatsHolder(Protocol):
    """The webhook dispatcher's counters (``coreapp.webhooks.dispatcher.WebhookDispatcher.stats``)."""

    @property
    def stats(self) -> DispatcherStats: ...


class DiskStates(Protocol):
    """The disk guard's last measurements (``coreapp.maintenance.disk.DiskGuard``)."""

    @property
    def states(self) -> Mapping[str, DiskView]: ...

    @property
    def inbound_held(self) -> int: ...

    @property
    def min_free_bytes(self) -> int: ...


class DiskView(Protocol):
    """One directory as the disk guard last measured it (``coreapp.maintenance.disk.DirState``)."""

    @property
    def free_bytes(self) -> int: ...

    @property
    def critical(self) -> bool: ...


class GcCounts(Protocol):
    """``coreapp.maintenance.gc.MessageGc``'s counters."""

    @property
    def runs(self) -> int: ...

    @property
    def deleted(self) -> int: ...


@dataclass(frozen=True)
class AppStatsSources:
    db: Database
    dispatcher: StatsHolder
    chat: ChatSource
    disk: DiskStates | None = None
    message_gc: GcCounts | None = None
    role: Callable[[], NodeRole] = single_node_role
    ha: HaCounts | None = None
    """Multiconnect: this node's lease counters."""


def _ok(db_stats: dict[str, dict[str, float]], name: str) -> int:
    stat = db_stats.get(name)
    return int(stat["count"] - stat["failures"]) if stat else 0


def app_families(
    sources: AppStatsSources,
    queue_size: int,
    uptime_s: float,
    *,
    oldest_pending_age_s: float = 0.0,
    dead_letters: int = 0,
) -> list[Metric]:
    """The ``/v1/stats/app`` families; the outbox figures are read from the database by the caller (async)."""
    families: list[Metric] = []
    queue = GaugeMetricFamily("callback_queue_size", "Current callback queue size")
    queue.add_metric([], queue_size)
    oldest = GaugeMetricFamily(
        "callback_oldest_pending_age_seconds", "Seconds the oldest callback still waiting for its HTTP 200 is queued"
    )
    oldest.add_metric([], round(oldest_pending_age_s, 3))
    dead = GaugeMetricFamily(
        "callback_dead_letters",
        "Callbacks given up on (older than WA_WEBHOOK_MAX_AGE_DAYS or past WA_WEBHOOK_MAX_ATTEMPTS), replayable",
    )
    dead.add_metric([], dead_letters)
    dead_lettered = CounterMetricFamily("callback_dead_lettered", "Callbacks moved to the dead-letter list")
    dead_lettered.add_metric([], sources.dispatcher.stats.dead_lettered)
    families += [queue, oldest, dead, dead_lettered]

    callbacks = SummaryMetricFamily(
        "callback_requests_duration_ms",
        "Webhook (callback) requests: count and total duration in ms by result (success or HTTP status or "
        "error name) and type",
        labels=["result", "type"],
    )
    for (result, kind), (count, total_ms) in sorted(sources.dispatcher.stats.durations_ms.items()):
        callbacks.add_metric([result, kind], count, total_ms)
    families.append(callbacks)

    db_stats = sources.db.stats()
    received = CounterMetricFamily("messages_received", "Inbound messages decrypted and stored")
    received.add_metric([], _ok(db_stats, TXN_RECEIVED))
    undecryptable = CounterMetricFamily(
        "decrypt_failures", "Inbound messages that could not be decrypted (recorded as undecryptable and acked)"
    )
    undecryptable.add_metric([], _ok(db_stats, TXN_UNDECRYPTABLE))
    families += [received, undecryptable]

    chat = sources.chat.scope
    receipts = CounterMetricFamily(
        "message_receipts",
        "Delivery/read/failed receipts from the network applied (one per device and status), by status, since the "
        "chat connection was built",
        labels=["status"],
    )
    for receipt_status in RECEIPT_STATUSES:
        receipts.add_metric([receipt_status.value], chat.receipts.applied.get(receipt_status, 0) if chat else 0)
    families.append(receipts)
    sent = CounterMetricFamily(
        "messages_sent",
        "Outbound messages answered by the network, by result (sent or failed), since the chat connection was built",
        labels=["result"],
    )
    sent.add_metric(["sent"], chat.sender.sent if chat else 0)
    sent.add_metric(["failed"], chat.sender.failed if chat else 0)
    reconnects = CounterMetricFamily(
        "chat_reconnects", "Chat sessions opened after the first one (reconnects to the network)"
    )
    reconnects.add_metric([], max(0, chat.connection.generation - 1) if chat else 0)
    families += [sent, reconnects]

    current = sources.chat.gateway_status()
    gateway = GaugeMetricFamily(
        "gateway_status", "Connection to the network: 1 for the current status, 0 otherwise", labels=["status"]
    )
    for status in GatewayStatus:
        gateway.add_metric([status.value], 1 if status is current else 0)
    up = GaugeMetricFamily("uptime_seconds", "Seconds since coreapp started")
    up.add_metric([], round(uptime_s, 3))
    role = sources.role()
    roles = GaugeMetricFamily("node_role", "This node's role: 1 for the current role, 0 otherwise", labels=["role"])
    for each in NodeRole:
        roles.add_metric([each.value], 1 if each is role else 0)
    families += [gateway, up, roles]
    if sources.ha is not None:
        taken = CounterMetricFamily("ha_roles_taken", "Leases (master or shard) this node took; each is a failover")
        taken.add_metric([], sources.ha.acquired)
        given = CounterMetricFamily("ha_roles_lost", "Leases this node gave up or lost")
        given.add_metric([], sources.ha.lost)
        epoch = GaugeMetricFamily("ha_lease_epoch", "Epoch of the lease held now (0: none)")
        epoch.add_metric([], sources.ha.epoch or 0)
        shard = GaugeMetricFamily(
            "ha_shard", "The shard this node owns (-1: none), of the count in the label", labels=["shards"]
        )
        slot = sources.ha.slot
        shard.add_metric([str(slot.shards if slot else 0)], slot.shard if slot else -1)
        families += [taken, given, epoch, shard]

    if sources.disk is not None:
        disk = sources.disk.states
        critical = GaugeMetricFamily(
            "disk_critical",
            "1 while the directory has less free space than WA_DISK_MIN_FREE_MB (sending is refused), else 0",
            labels=["dir"],
        )
        free = GaugeMetricFamily("disk_free_bytes", "Free bytes in the directory at the last check", labels=["dir"])
        floor = GaugeMetricFamily(
            "disk_min_free_bytes", "WA_DISK_MIN_FREE_MB in bytes: below it a directory is critical"
        )
        floor.add_metric([], sources.disk.min_free_bytes)
        for name, state in sorted(disk.items()):
            critical.add_metric([name], 1 if state.critical else 0)
            free.add_metric([name], state.free_bytes)
        held = GaugeMetricFamily(
            "inbound_paused",
            "1 while inbound messages wait unacked for disk space in the data or media directory, else 0",
        )
        held.add_metric([], 1 if sources.disk.inbound_held else 0)
        families += [critical, free, floor, held]
    if sources.message_gc is not None:
        runs = CounterMetricFamily("message_gc_runs", "Message garbage collection runs (periodic and on demand)")
        runs.add_metric([], sources.message_gc.runs)
        deleted = CounterMetricFamily("message_gc_deleted", "Messages deleted by garbage collection")
        deleted.add_metric([], sources.message_gc.deleted)
        families += [runs, deleted]
    return families


def db_families(db: Database, table_counts: dict[str, int], message_counts: dict[tuple[str, str], int]) -> list[Metric]:
    """The ``/v1/stats/db`` families: transaction timings by name, retries, failures, row counts."""
    stats = db.stats()
    timings = SummaryMetricFamily(
        "db_request_duration_us",
        "Database transactions: count and total duration in microseconds by transaction name",
        labels=["db", "request"],
    )
    retries = CounterMetricFamily(
        "db_request_retries", "Transactions retried after a deadlock or lock timeout", labels=["db", "request"]
    )
    failures = CounterMetricFamily("db_request_failures", "Transactions that failed", labels=["db", "request"])
    for name, stat in sorted(stats.items()):
        timings.add_metric([DB_LABEL, name], int(stat["count"]), stat["total_s"] * 1e6)
        retries.add_metric([DB_LABEL, name], stat["retries"])
        failures.add_metric([DB_LABEL, name], stat["failures"])
    rows = GaugeMetricFamily("db_table_rows", "Rows per table", labels=["db", "table"])
    for table, count in sorted(table_counts.items()):
        rows.add_metric([DB_LABEL, table], count)
    stored = GaugeMetricFamily(
        "db_messages", "Stored messages by direction and status", labels=["db", "direction", "status"]
    )
    for (direction, status), count in sorted(message_counts.items()):
        stored.add_metric([DB_LABEL, direction, status], count)
    return [timings, retries, failures, rows, stored]
