"""OpenPrem, beyond the original (ROLE_ADMIN): ``GET /v1/webhooks/log``, the newest webhook delivery attempts, and
the dead-letter list: ``GET /v1/webhooks/dead``, ``POST /v1/webhooks/dead/{event_id}/replay`` and
``POST /v1/webhooks/dead/replay`` (the oldest ``limit``, 1000 by default; call again while ``remaining``).

Each log entry: event id, outbox seq, kind, receiver host (no path or query), attempt number, HTTP status or
error, latency, time and ``action`` (``attempt``, ``dead_lettered``, ``replayed``).  coreapp keeps the newest
10,000 entries, at most 7 days old.  A webhook that still fails when older than ``WA_WEBHOOK_MAX_AGE_DAYS`` (or at
attempt ``WA_WEBHOOK_MAX_ATTEMPTS``) is dead-lettered, which lets the ones behind it go; a replay queues it again
with the same event id (receivers dedupe by it).  The records are the replies of ``webhooks.*``
(``shared.bus.contract.ops``), relayed as they are.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from shared.bus.contract.ops import (
    LOG_LIMIT_DEFAULT,
    LOG_LIMIT_MAX,
    REPLAY_LIMIT_DEFAULT,
    REPLAY_LIMIT_MAX,
    WEBHOOK_DEAD,
    WEBHOOK_LOG,
    WEBHOOK_REPLAY,
    DeadWebhooks,
    LogQuery,
    Replayed,
    ReplayRequest,
    WebhookLog,
)
from shared.bus.rpc import to_builtins
from shared.errors import ApiError, ErrorCode
from webapp.envelope import ok
from webapp.openapi import QueryParam, doc
from webapp.routes.common import require_admin, rpc

routes = web.RouteTableDef()

LIMIT_MAX = LOG_LIMIT_MAX
LIMIT_QUERY = QueryParam(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": LOG_LIMIT_DEFAULT},
    "How many attempts, newest first",
)


class WebhookLogResponse(msgspec.Struct):
    """The answer's payload (for the document): the contract's reply under ``webhooks``."""

    webhooks: WebhookLog


REPLAY_LIMIT_QUERY = QueryParam(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": REPLAY_LIMIT_MAX, "default": REPLAY_LIMIT_DEFAULT},
    "How many dead-lettered events at most, oldest first",
)
_EVENT_ID_PARAM = {"event_id": {"type": "string", "maxLength": 64, "description": "the event id (X-OpenPrem-Event-Id)"}}


class DeadWebhooksResponse(msgspec.Struct):
    webhooks: DeadWebhooks


class ReplayedResponse(msgspec.Struct):
    webhooks: Replayed


def _limit(request: web.Request, default: int = LOG_LIMIT_DEFAULT, maximum: int = LIMIT_MAX) -> int:
    unknown = sorted(set(request.query) - {"limit"})
    if unknown:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"unknown query parameter: {unknown[0]}")
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"limit must be an integer from 1 to {maximum}")
    return int(raw)


@routes.get("/v1/webhooks/log")
@doc(
    "Webhook delivery log (newest attempts first)",
    responses={200: WebhookLogResponse},
    query=[LIMIT_QUERY],
    admin=True,
    rpc=True,
    tags=["webhooks"],
)
async def get_log(request: web.Request) -> web.Response:
    require_admin(request)
    result = await rpc(request, WEBHOOK_LOG, LogQuery(limit=_limit(request)))
    return ok(request, {"webhooks": {"log": to_builtins(result)["log"]}})


@routes.get("/v1/webhooks/dead")
@doc(
    "Dead-lettered webhooks (given up on: too old or too many failures), newest first",
    responses={200: DeadWebhooksResponse},
    query=[LIMIT_QUERY],
    admin=True,
    rpc=True,
    tags=["webhooks"],
)
async def list_dead(request: web.Request) -> web.Response:
    require_admin(request)
    result = await rpc(request, WEBHOOK_DEAD, LogQuery(limit=_limit(request)))
    return ok(request, {"webhooks": to_builtins(result)})


@routes.post("/v1/webhooks/dead/replay")
@doc(
    "Queue the oldest dead-lettered webhooks again (same event ids)",
    responses={200: ReplayedResponse},
    query=[REPLAY_LIMIT_QUERY],
    admin=True,
    rpc=True,
    tags=["webhooks"],
)
async def replay_all(request: web.Request) -> web.Response:
    require_admin(request)
    limit = _limit(request, REPLAY_LIMIT_DEFAULT, REPLAY_LIMIT_MAX)
    result = await rpc(request, WEBHOOK_REPLAY, ReplayRequest(limit=limit))
    return ok(request, {"webhooks": to_builtins(result)})


@routes.post("/v1/webhooks/dead/{event_id}/replay")
@doc(
    "Queue one dead-lettered webhook again (same event id)",
    responses={200: ReplayedResponse},
    path_params=_EVENT_ID_PARAM,
    admin=True,
    rpc=True,
    tags=["webhooks"],
)
async def replay_one(request: web.Request) -> web.Response:
    require_admin(request)
    event_id = request.match_info["event_id"]
    if request.query:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"unknown query parameter: {sorted(request.query)[0]}")
    if len(event_id) > 64:
        raise ApiError(ErrorCode.NOT_FOUND, "no such dead-lettered webhook")
    result = await rpc(request, WEBHOOK_REPLAY, ReplayRequest(event_id=event_id, limit=1))
    return ok(request, {"webhooks": to_builtins(result)})
