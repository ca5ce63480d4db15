"""One module per ``/v1`` resource; ``ROUTES`` is what the composition root mounts."""

from __future__ import annotations

from aiohttp import web

from webapp.routes import account, health, messages, metrics, settings, users

ROUTES: tuple[web.RouteTableDef, ...] = (
    users.routes,
    account.routes,
    health.routes,
    messages.routes,
    settings.routes,
    metrics.routes,
)
