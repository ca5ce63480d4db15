"""``/v1/health``: coreapp's gateway status.  It never fails, so load balancers and monitors get an answer.

When coreapp does not answer (not running, bus down, timeout), webapp cannot reach the gateway either, so
the answer is ``{"health":{"gateway_status":"disconnected"}}`` with HTTP 200, not 1011: the shape monitors
parse stays the same and the log says why.

While coreapp reports a critical condition (DESIGN §3: e.g. less than ``WA_DISK_MIN_FREE_MB`` free in the data,
log or media directory), its ``errors`` are passed through inside ``health``:
``{"health":{"gateway_status":"connected","errors":[{"code":1016,"title":"System overloaded","details":"…"}]}}``.
The key is absent otherwise, so the reference shape is unchanged when all is well.  webapp adds its own
(``webapp.disk``: the media or data directory it writes under ``WA_DISK_MIN_FREE_MB``), without repeating one
coreapp already reported in the same words.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from shared.bus.contract.health import HEALTH, GatewayStatus
from shared.bus.rpc import EMPTY, to_builtins
from shared.errors import ApiError
from webapp.envelope import ok
from webapp.openapi import doc
from webapp.routes.common import rpc
from webapp.schemas.responses import HealthResponse
from webapp.state import CLUSTER_KEY, DISK_KEY, RPC_TIMEOUT_KEY

log = logging.getLogger("openprem.webapp.health")

HEALTH_TIMEOUT_S = 5.0

routes = web.RouteTableDef()


@routes.get("/v1/health")
@doc("Gateway status (never fails)", responses={200: HealthResponse}, tags=["health"])
async def health(request: web.Request) -> web.Response:
    """Any failure to get a valid ``health.get`` reply (no answer, an error, a reply outside the contract such
    as an unknown ``gateway_status``) is ``disconnected``."""
    cluster = request.app.get(CLUSTER_KEY)
    if cluster is not None:  # multiconnect: every node with its role (reference §2.4), from their states
        return ok(request, {"health": cluster.health()})
    timeout = min(HEALTH_TIMEOUT_S, request.app[RPC_TIMEOUT_KEY])
    health: dict[str, Any] = {"gateway_status": GatewayStatus.DISCONNECTED.value}
    try:
        result = await rpc(request, HEALTH, EMPTY, timeout_s=timeout)
    except ApiError as exc:
        log.warning("health: coreapp did not answer (%s)", exc)
    except Exception:
        log.exception("health: bus request failed")
    else:
        health["gateway_status"] = result.gateway_status.value
        if result.errors:
            health["errors"] = to_builtins(result)["errors"]
    known = {(e.get("code"), e.get("details")) for e in health.get("errors", [])}
    for error in request.app[DISK_KEY].errors():
        if (error.code.code, error.details) not in known:
            health.setdefault("errors", []).append(error.to_dict())
    return ok(request, {"health": health})
