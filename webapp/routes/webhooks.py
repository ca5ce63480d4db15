"""``GET /v1/webhooks/log`` (OpenPrem, beyond the original): the newest webhook delivery attempts (ROLE_ADMIN).

Each entry: event id, outbox seq, kind, receiver host (no path or query), attempt number, HTTP status or error,
latency and time.  coreapp keeps the newest 10,000 attempts, at most 7 days old.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from shared.errors import ApiError, ErrorCode
from webapp.envelope import ok
from webapp.openapi import QueryParam, doc
from webapp.routes.common import require_admin, rpc

routes = web.RouteTableDef()

LIMIT_MAX = 1000
LIMIT_QUERY = QueryParam(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 100},
    "How many attempts, newest first",
)


class WebhookLogEntry(BaseModel):
    event_id: str
    seq: int
    kind: str
    host: str
    attempt: int
    status: int | None
    error: str | None
    latency_ms: float
    at: str


class WebhookLog(BaseModel):
    log: list[WebhookLogEntry]


class WebhookLogResponse(BaseModel):
    webhooks: WebhookLog


def _limit(request: web.Request) -> int:
    unknown = sorted(set(request.query) - {"limit"})
    if unknown:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"unknown query parameter: {unknown[0]}")
    raw = request.query.get("limit", "100")
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
    result = await rpc(request, "webhooks.get_log", {"limit": _limit(request)})
    return ok(request, {"webhooks": {"log": result.get("log", [])}})
