"""Operations: ``/v1/stats/app``, ``/v1/stats/db``, ``/v1/support`` and ``PUT /v1/services/message/gc``.

Stats are coreapp's (``stats.app`` in memory, ``stats.db`` from the database) and are relayed as they come:
the §2.11 JSON map under ``stats.app`` / ``stats.db``, or Prometheus text with ``?format=prometheus``.  Any
authenticated user may read stats; support details and GC are ROLE_ADMIN.  ``/v1/support`` always answers:
when coreapp is unreachable its section is ``null`` and ``coreapp_error`` says why.

``/v1/stats/app/internal`` and ``/v1/stats/db/internal`` are the original's internal variants (for support, so
ROLE_ADMIN and no ``Apikey``): the same metrics in the same shapes.  The original keyed them per node in a cluster;
OpenPrem runs one coreapp per number, so there is no per-node detail to add yet (issue 11).
"""

from __future__ import annotations

import importlib.metadata
import logging
import platform
import time
from typing import Any, Literal

from aiohttp import web

from shared.bus.contract.messages import GC
from shared.bus.contract.ops import STATS_APP, STATS_DB, SUPPORT, Stats, StatsQuery
from shared.bus.local import LocalBus
from shared.bus.rpc import EMPTY, Method, to_builtins
from shared.errors import ApiError, ErrorCode
from shared.metrics import PROMETHEUS_CONTENT_TYPE
from webapp.envelope import ok
from webapp.openapi import QueryParam, doc
from webapp.routes.common import require_admin, rpc
from webapp.schemas.responses import GcResponse, StatsResponse, SupportResponse
from webapp.state import BUS_KEY, VERSION_KEY

log = logging.getLogger("openprem.webapp.ops")

routes = web.RouteTableDef()

FORMATS = ("json", "prometheus")
FORMAT_QUERY = QueryParam(
    "format", {"type": "string", "enum": list(FORMATS)}, "prometheus: Prometheus text exposition; default JSON"
)
NODE_QUERY = QueryParam(
    "node",
    {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
    "multiconnect: the node whose figures to return (a name from /v1/health); default the primary master",
)
PROMETHEUS_TEXT = {"text/plain": {"type": "string"}}
SUPPORT_TIMEOUT_S = 5.0
_PROCESS_STARTED = time.monotonic()


def stats_format(request: web.Request) -> Literal["json", "prometheus"]:
    """``?format=``: absent or ``json`` → JSON, ``prometheus`` → text; anything else is 1009."""
    fmt = request.query.get("format", "json")
    if fmt == "json":
        return "json"
    if fmt == "prometheus":
        return "prometheus"
    raise ApiError(ErrorCode.INVALID_PARAMETER, "format: must be json or prometheus")


def prometheus_response(text: str | bytes) -> web.Response:
    body = text.encode("utf-8") if isinstance(text, str) else text
    # The content type carries a charset, which content_type= refuses (dependencies §5.7): set the header.
    return web.Response(body=body, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


async def _relay_stats(request: web.Request, method: Method[StatsQuery, Stats], section: str) -> web.Response:
    fmt = stats_format(request)
    result = await rpc(request, method, StatsQuery(format=fmt), node=request.query.get("node") or None)
    # ``Stats`` holds either member, so which one came is the one thing the decode cannot check.
    if fmt == "prometheus":
        if result.text is None:
            raise ApiError(ErrorCode.INTERNAL, f"malformed reply from coreapp to {method.name}: no text")
        return prometheus_response(result.text)
    if result.metrics is None:
        raise ApiError(ErrorCode.INTERNAL, f"malformed reply from coreapp to {method.name}: no metrics")
    return ok(request, {"stats": {section: result.metrics}})


_STATS_DOC: dict[str, Any] = {
    "query": [FORMAT_QUERY, NODE_QUERY],
    "responses": {200: StatsResponse},
    "raw_responses": {200: PROMETHEUS_TEXT},
    "rpc": True,
    "tags": ["stats"],
}


@routes.get("/v1/stats/app")
@doc("coreapp in-memory stats (callbacks, messages, reconnects, gateway)", **_STATS_DOC)
async def stats_app(request: web.Request) -> web.Response:
    return await _relay_stats(request, STATS_APP, "app")


@routes.get("/v1/stats/db")
@doc("Database stats (transaction timings, retries, row counts)", **_STATS_DOC)
async def stats_db(request: web.Request) -> web.Response:
    return await _relay_stats(request, STATS_DB, "db")


_INTERNAL_STATS_DOC: dict[str, Any] = {**_STATS_DOC, "admin": True}


@routes.get("/v1/stats/app/internal")
@doc("Internal coreapp stats (ROLE_ADMIN): the same metrics as /v1/stats/app", **_INTERNAL_STATS_DOC)
async def stats_app_internal(request: web.Request) -> web.Response:
    require_admin(request)
    return await _relay_stats(request, STATS_APP, "app")


@routes.get("/v1/stats/db/internal")
@doc("Internal database stats (ROLE_ADMIN): the same metrics as /v1/stats/db", **_INTERNAL_STATS_DOC)
async def stats_db_internal(request: web.Request) -> web.Response:
    require_admin(request)
    return await _relay_stats(request, STATS_DB, "db")


def _webapp_support(request: web.Request) -> dict[str, Any]:
    try:
        version = importlib.metadata.version("openprem")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "version": version,
        "client_version": request.app[VERSION_KEY],
        "python": platform.python_version(),
        "uptime_s": round(time.monotonic() - _PROCESS_STARTED, 3),
        "bus": "LOCAL" if isinstance(request.app[BUS_KEY], LocalBus) else "MQTT",
    }


@routes.get("/v1/support")
@doc(
    "Support details: versions, uptime, gateway status, backends, row counts",
    responses={200: SupportResponse},
    admin=True,
    tags=["operations"],
)
async def support(request: web.Request) -> web.Response:
    require_admin(request)
    body: dict[str, Any] = {"webapp": _webapp_support(request), "coreapp": None}
    try:
        coreapp = await rpc(request, SUPPORT, EMPTY, timeout_s=SUPPORT_TIMEOUT_S)
        body["coreapp"] = to_builtins(coreapp)
    except ApiError as exc:
        log.warning("support: coreapp did not answer (%s)", exc)
        body["coreapp_error"] = str(exc)
    return ok(request, {"support": body})


@routes.put("/v1/services/message/gc")
@doc(
    "Delete messages in a final state and their receipt log (never queued webhooks)",
    description="Outbound read/failed after 7 days, delivered after 30 days, inbound after 30 days. "
    "`complete` is false when the run hit its time budget: call again to continue.",
    responses={200: GcResponse},
    admin=True,
    rpc=True,
    tags=["operations"],
)
async def message_gc(request: web.Request) -> web.Response:
    require_admin(request)
    result = await rpc(request, GC, EMPTY)
    return ok(request, {"gc": {"deleted": result.deleted, "complete": result.complete}})
