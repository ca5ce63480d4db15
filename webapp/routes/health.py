"""``/v1/health``: coreapp's gateway status.  It never fails, so load balancers and monitors get an answer.

When coreapp does not answer (not running, bus down, timeout), webapp cannot reach the gateway either, so
the answer is ``{"health":{"gateway_status":"disconnected"}}`` with HTTP 200, not 1011: the shape monitors
parse stays the same and the log says why.

While coreapp reports a critical condition (DESIGN §3: e.g. less than ``WA_DISK_MIN_FREE_MB`` free in the data,
log or media directory), its ``errors`` are passed through inside ``health``:
``{"health":{"gateway_status":"connected","errors":[{"code":1016,"title":"System overloaded","details":"…"}]}}``.
The key is absent otherwise, so the reference shape is unchanged when all is well.
"""

from __future__ import annotations

import logging
from typing import Any

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
    errors: list[dict[str, Any]] = []
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
        reported_errors = result.get("errors")
        if isinstance(reported_errors, list):
            errors = [e for e in reported_errors if isinstance(e, dict)]
    health: dict[str, Any] = {"gateway_status": status}
    if errors:
        health["errors"] = errors
    return ok(request, {"health": health})
