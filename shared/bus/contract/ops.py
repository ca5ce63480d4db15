"""Operations: ``stats.app``, ``stats.db``, ``support.get``, the webhook delivery log (reference §2.11) and the
webhook dead-letter list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from shared.bus.contract.health import GatewayStatus
from shared.bus.contract.types import JsonObject
from shared.bus.rpc import Empty, Method, Placement
from shared.config import BusKind, DbEngine

LOG_LIMIT_DEFAULT = 100
LOG_LIMIT_MAX = 1000
REPLAY_LIMIT_DEFAULT = 1000
REPLAY_LIMIT_MAX = 10_000

WebhookAction = Literal["attempt", "dead_lettered", "replayed"]
DeadReason = Literal["max_age", "max_attempts"]


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
    action: WebhookAction = "attempt"
    """``attempt`` (a POST: ``status`` or ``error``), ``dead_lettered`` (given up: ``error`` says why; ``attempt`` is
    the number of failed attempts) or ``replayed`` (queued again by an admin).  Absent from an older coreapp."""


class WebhookLog(msgspec.Struct):
    log: list[WebhookLogEntry]


class DeadWebhook(msgspec.Struct):
    """One dead-lettered event (a ``webhook_dead`` row); its body stays in coreapp."""

    event_id: str
    seq: int
    """Its outbox seq when it was given up on."""
    kind: str
    attempts: int
    reason: DeadReason
    last_error: str | None
    created_at: datetime
    dead_at: datetime


class DeadWebhooks(msgspec.Struct):
    dead: list[DeadWebhook]
    total: int


class ReplayRequest(msgspec.Struct):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    """One event; none: the oldest dead-lettered ones, up to ``limit``."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=REPLAY_LIMIT_MAX)] = REPLAY_LIMIT_DEFAULT


class Replayed(msgspec.Struct):
    replayed: int
    remaining: int


STATS_APP = Method(
    "stats.app",
    StatsQuery,
    Stats,
    doc="`metrics` (the §2.11 map) or `text` (Prometheus exposition): `callback_queue_size`, "
    "`callback_oldest_pending_age_seconds`, `callback_dead_letters`, `callback_dead_lettered_total`, "
    "`callback_requests_duration_ms_count/_sum{result,type}`, `messages_received_total`, "
    "`messages_sent_total{result}`, `message_receipts_total`, `decrypt_failures_total`, `chat_reconnects_total`, "
    "`gateway_status{status}`, `uptime_seconds`, `disk_critical{dir}`, `disk_free_bytes{dir}`, `inbound_paused`",
    errors="1009 bad format",
    placement=Placement.NODE,
)
STATS_DB = Method(
    "stats.db",
    StatsQuery,
    Stats,
    doc="the same two shapes: `db_request_duration_us_count/_sum{db,request}` (one `request` per transaction name), "
    "`db_request_retries_total`, `db_request_failures_total`, `db_table_rows{db,table}` (messages, "
    "message_receipt_log, webhook_outbox, webhook_dead), `db_messages{db,direction,status}`",
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
    doc="`log`: the newest delivery attempts first (`GET /v1/webhooks/log`), with the dead-letterings and replays "
    "(`action`)",
    errors="1009 limit not 1-1000",
)
WEBHOOK_DEAD = Method(
    "webhooks.list_dead",
    LogQuery,
    DeadWebhooks,
    doc="`dead`: the newest dead-lettered events first (failed past `WA_WEBHOOK_MAX_AGE_DAYS` or "
    "`WA_WEBHOOK_MAX_ATTEMPTS`; kept `WA_WEBHOOK_DEAD_RETENTION_DAYS`), `total` of them (`GET /v1/webhooks/dead`)",
    errors="1009 limit not 1-1000",
)
WEBHOOK_REPLAY = Method(
    "webhooks.replay_dead",
    ReplayRequest,
    Replayed,
    doc="queues `event_id` (or the oldest `limit` dead events) again, at the end of its partition, same event id, "
    "attempts from 0; `remaining` dead events (`POST /v1/webhooks/dead/{event_id}/replay`, `/v1/webhooks/dead/replay`)",
    errors="1006 unknown event_id (never dead-lettered, already replayed or collected), 1009 limit not 1-10000",
)
