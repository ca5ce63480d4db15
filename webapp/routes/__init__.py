"""One module per ``/v1`` resource; ``ROUTES`` is what the composition root mounts."""

from __future__ import annotations

from aiohttp import web

from webapp.routes import (
    account,
    certificates,
    contacts,
    docs,
    health,
    media,
    messages,
    metrics,
    ops,
    profile,
    settings,
    settings_extra,
    unsupported,
    users,
    webhooks,
)

ROUTES: tuple[web.RouteTableDef, ...] = (
    users.routes,
    account.routes,
    health.routes,
    messages.routes,
    settings.routes,
    metrics.routes,
    media.routes,
    contacts.routes,
    settings_extra.routes,
    profile.routes,
    certificates.routes,
    ops.routes,
    webhooks.routes,
    unsupported.routes,
    docs.routes,
)
