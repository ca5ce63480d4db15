"""``/v1/health``: coreapp's gateway status.  It never fails, so load balancers and monitors get an answer.

When coreapp does not answer (not running, bus down, timeout), webapp cannot reach the gateway either, so
the answer is ``{"health":{"gateway_status":"disconnected"}}`` with HTTP 200, not 1011: the shape monitors
parse stays the same and the log says why.
"""

from __future__ import annotations

import logging

from aiohttp import web

from shared.errors import ApiError
from webapp.envelope import ok
from webapp.openapi import doc
from webapp.routes.common import rpc
from webapp.schemas.responses import HealthResponse
from webapp.state import RPC_TIMEOUT_KEY

log = logging.getLogger("openprem.webapp.health")

HEALTH_TIMEOUT_S = 5.0
GATEWAY_STATUSES = frozenset({"connected", "connecting", "disconnected", "uninitialized", "unregistered"})

routes = web.RouteTableDef()


@routes.get("/v1/health")
@doc("Gateway status (never fails)", responses={200: HealthResponse}, tags=["health"])
async def health(request: web.Request) -> web.Response:
    timeout = min(HEALTH_TIMEOUT_S, request.app[RPC_TIMEOUT_KEY])
    status = "disconnected"
    try:
        result = await rpc(request, "health.get", {}, timeout_s=timeout)
    except ApiError as exc:
        log.warning("health: coreapp did not answer (%s)", exc)
    except Exception:
        log.exception("health: bus request failed")
    else:
        reported = result.get("gateway_status")
        if isinstance(reported, str) and reported in GATEWAY_STATUSES:
            status = reported
        else:
            log.warning("health: coreapp reported an unknown gateway_status %r", reported)
    return ok(request, {"health": {"gateway_status": status}})
