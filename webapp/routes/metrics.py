"""``/metrics`` (no ``/v1`` prefix, as in the original): webapp's own metrics.

JSON (the §2.11 shape, under ``stats.web``) by default, Prometheus text with ``?format=prometheus``; the
format parameter and the content type are handled exactly as for ``/v1/stats/*``.
"""

from __future__ import annotations

from aiohttp import web

from webapp.envelope import ok
from webapp.openapi import doc
from webapp.routes.ops import FORMAT_QUERY, PROMETHEUS_TEXT, prometheus_response, stats_format
from webapp.schemas.responses import StatsResponse
from webapp.state import METRICS_KEY

routes = web.RouteTableDef()


@routes.get("/metrics")
@doc(
    "webapp metrics (HTTP requests, RPC round trips, logins)",
    query=[FORMAT_QUERY],
    responses={200: StatsResponse},
    raw_responses={200: PROMETHEUS_TEXT},
    tags=["stats"],
)
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS_KEY]
    if stats_format(request) == "prometheus":
        return prometheus_response(registry.prometheus_text())
    return ok(request, registry.as_json())
