"""Operations: ``stats.app``, ``stats.db``, ``support.get`` and the webhook delivery log (reference §2.11)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from shared.bus.contract.health import GatewayStatus
from shared.bus.contract.types import JsonObject
from shared.bus.rpc import Empty, Method
from shared.config import BusKind, DbEngine

LOG_LIMIT_DEFAULT = 100
LOG_LIMIT_MAX = 1000


class StatsQuery(msgspec.Struct):
    format: Literal["json", "prometheus"] = "json"


class Stats(msgspec.Struct, omit_defaults=True):
    """The §2.11 JSON map (``metrics``) or Prometheus text (``text``): webapp relays either unread."""

    metrics: JsonObject | None = None
    text: str | None = None


class Support(msgspec.Struct):
    version: str
    client_version: str
    python: str
    uptime_s: float
    gateway_status: GatewayStatus
    registered: bool
    db_engine: DbEngine
    bus: BusKind
    counts: dict[str, int]


class LogQuery(msgspec.Struct):
    limit: Annotated[int, msgspec.Meta(ge=1, le=LOG_LIMIT_MAX)] = LOG_LIMIT_DEFAULT


class WebhookLogEntry(msgspec.Struct):
    """One delivery attempt (a ``webhook_log`` row): ``status`` when the receiver answered, else ``error``."""

    # coreapp's dispatcher writes these and webapp shows them; ``host`` names the receiver, no path or query.

    event_id: str
    seq: int
    kind: str
    host: str
    attempt: int
    status: int | None
    error: str | None
    latency_ms: float
    at: datetime
    """UTC; ISO 8601 on the wire."""


class WebhookLog(msgspec.Struct):
    log: list[WebhookLogEntry]


STATS_APP = Method(
    "stats.app",
    StatsQuery,
    Stats,
    doc="`metrics` (the §2.11 map) or `text` (Prometheus exposition): `callback_queue_size`, "
    "`callback_requests_duration_ms_count/_sum{result,type}`, `messages_received_total`, "
    "`messages_sent_total{result}`, `message_receipts_total`, `decrypt_failures_total`, `chat_reconnects_total`, "
    "`gateway_status{status}`, `uptime_seconds`",
    errors="1009 bad format",
)
STATS_DB = Method(
    "stats.db",
    StatsQuery,
    Stats,
    doc="the same two shapes: `db_request_duration_us_count/_sum{db,request}` (one `request` per transaction name), "
    "`db_request_retries_total`, `db_request_failures_total`, `db_table_rows{db,table}` (messages, "
    "message_receipt_log, webhook_outbox), `db_messages{db,direction,status}`",
    errors="1009 bad format",
)
SUPPORT = Method(
    "support.get",
    Empty,
    Support,
    doc="versions, uptime, gateway status, backends and row counts: no hosts, users, numbers or keys",
)
WEBHOOK_LOG = Method(
    "webhooks.get_log",
    LogQuery,
    WebhookLog,
    doc="`log`: the newest delivery attempts first (`GET /v1/webhooks/log`)",
    errors="1009 limit not 1-1000",
)
