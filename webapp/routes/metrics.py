"""``/metrics`` (no ``/v1`` prefix, as in the original): Prometheus text with ``?format=prometheus``, else JSON."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from webapp.envelope import ok
from webapp.state import METRICS_KEY

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS_KEY]
    if request.query.get("format") == "prometheus":
        # CONTENT_TYPE_LATEST carries a charset, which content_type= refuses: set the header directly.
        return web.Response(body=registry.prometheus_text(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return ok(request, registry.as_json())
