"""``/v1/settings/application``: ROLE_ADMIN only; coreapp stores and applies, webapp validates first."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shared.appsettings import ApplicationSettings
from shared.bus.contract.settings import (
    GET_APPLICATION,
    PATCH_APPLICATION,
    RESET_APPLICATION,
    Application,
    PatchApplication,
)
from shared.bus.rpc import EMPTY
from webapp.envelope import ok, read_json
from webapp.openapi import doc
from webapp.routes.common import require_admin, rpc
from webapp.schemas.responses import ApplicationSettingsResponse
from webapp.schemas.settings import validate_application_patch
from webapp.state import TARGETS_KEY, WEB_SETTINGS_KEY

routes = web.RouteTableDef()

PATH = "/v1/settings/application"


def _settings_payload(result: Application) -> dict[str, Any]:
    return {"settings": {"application": result.application}}


@routes.get(PATH)
@doc("Application settings", responses={200: ApplicationSettingsResponse}, admin=True, rpc=True, tags=["settings"])
async def get_application(request: web.Request) -> web.Response:
    require_admin(request)
    return ok(request, _settings_payload(await rpc(request, GET_APPLICATION, EMPTY)))


@routes.patch(PATH)
@doc(
    "Change application settings (keys left out stay unchanged)",
    request=ApplicationSettings,
    responses={200: ApplicationSettingsResponse},
    admin=True,
    rpc=True,
    tags=["settings"],
)
async def patch_application(request: web.Request) -> web.Response:
    """Keys left out stay unchanged; the answer is the full document after the change."""
    require_admin(request)
    allow_http = request.app[WEB_SETTINGS_KEY].allow_http_loopback_webhooks
    body, targets = await read_json(request), request.app[TARGETS_KEY]
    partial = validate_application_patch(body, allow_http_loopback=allow_http, targets=targets)
    result = await rpc(request, PATCH_APPLICATION, PatchApplication(application=partial))
    return ok(request, _settings_payload(result))


@routes.delete(PATH)
@doc(
    "Reset application settings to the defaults",
    responses={200: ApplicationSettingsResponse},
    admin=True,
    rpc=True,
    tags=["settings"],
)
async def reset_application(request: web.Request) -> web.Response:
    """Back to the defaults; the answer is the reset document."""
    require_admin(request)
    return ok(request, _settings_payload(await rpc(request, RESET_APPLICATION, EMPTY)))
