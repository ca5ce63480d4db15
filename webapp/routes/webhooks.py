"""``GET /v1/webhooks/log`` (OpenPrem, beyond the original): the newest webhook delivery attempts (ROLE_ADMIN).

Each entry: event id, outbox seq, kind, receiver host (no path or query), attempt number, HTTP status or error,
latency and time.  coreapp keeps the newest 10,000 attempts, at most 7 days old.  The record is the reply of
``webhooks.get_log`` (``shared.bus.contract.ops.WebhookLogEntry``), relayed as it is.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from shared.bus.contract.ops import LOG_LIMIT_DEFAULT, LOG_LIMIT_MAX, WEBHOOK_LOG, LogQuery, WebhookLog
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


def _limit(request: web.Request) -> int:
    unknown = sorted(set(request.query) - {"limit"})
    if unknown:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"unknown query parameter: {unknown[0]}")
    raw = request.query.get("limit", str(LOG_LIMIT_DEFAULT))
    if not raw.isdigit() or not 1 <= int(raw) <= LIMIT_MAX:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"limit must be an integer from 1 to {LIMIT_MAX}")
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
