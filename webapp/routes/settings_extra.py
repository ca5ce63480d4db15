"""Media providers and backup/restore under ``/v1/settings`` (ROLE_ADMIN; coreapp keeps the state).

GET providers answers credentials masked (``"bearer": "****"``): the original returned them in clear, OpenPrem
never sends a stored secret back out.  Backup passwords are never logged.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from shared.bus.contract import settings as contract
from shared.bus.rpc import EMPTY
from shared.errors import ApiError, ErrorCode
from webapp.envelope import ok, read_json, validate
from webapp.openapi import doc
from webapp.routes.common import require_admin, rpc
from webapp.schemas.responses import BackupResponse, ProvidersResponse
from webapp.schemas.settings_extra import BackupRequest, ProvidersBody, RestoreRequest, validate_providers

log = logging.getLogger("openprem.webapp.settings")

routes = web.RouteTableDef()

PROVIDERS = "/v1/settings/application/media/providers"
MAX_RESTORE_BODY_BYTES = 64 * 1024 * 1024
"""A backup grows with the number of Signal sessions, past the 1 MiB JSON limit of other endpoints."""
BACKUP_TIMEOUT_S = 60.0
"""Key derivation is deliberately slow; a restore also reconnects.  Longer than the default RPC budget."""


async def _read_large_json(request: web.Request) -> dict[str, object]:
    """Like ``read_json`` with a larger cap (streamed: ``client_max_size`` only guards ``request.read``)."""
    if (request.content_length or 0) > MAX_RESTORE_BODY_BYTES:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "body is larger than any backup")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_RESTORE_BODY_BYTES:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "body is larger than any backup")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks)) if size else None
    except orjson.JSONDecodeError:
        raise ApiError(ErrorCode.INVALID_REQUEST, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(ErrorCode.INVALID_REQUEST, "request body must be a JSON object")
    return body


def _providers_payload(result: contract.Providers) -> dict[str, object]:
    return {"settings": {"application": {"media": {"providers": result.providers}}}}


@routes.get(PROVIDERS)
@doc(
    "Media providers (credentials masked)",
    responses={200: ProvidersResponse},
    admin=True,
    rpc=True,
    tags=["settings"],
)
async def get_providers(request: web.Request) -> web.Response:
    require_admin(request)
    return ok(request, _providers_payload(await rpc(request, contract.GET_MEDIA_PROVIDERS, EMPTY)))


@routes.post(PROVIDERS)
@doc(
    "Add or replace media providers (by name)",
    request=ProvidersBody,
    admin=True,
    rpc=True,
    tags=["settings"],
)
async def post_providers(request: web.Request) -> web.Response:
    """An array of providers; each replaces the stored one of the same name (upsert)."""
    require_admin(request)
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(ErrorCode.INVALID_REQUEST, "request body is not valid JSON") from None
    if not isinstance(body, list):
        raise ApiError(ErrorCode.INVALID_REQUEST, "request body must be a JSON array of providers")
    providers = validate_providers(body)
    await rpc(request, contract.POST_MEDIA_PROVIDERS, contract.SetProviders(providers=providers))
    return ok(request)


@routes.delete(PROVIDERS + "/{name}")
@doc("Delete a media provider", admin=True, rpc=True, tags=["settings"])
async def delete_provider(request: web.Request) -> web.Response:
    require_admin(request)
    await rpc(request, contract.DELETE_MEDIA_PROVIDER, contract.ProviderName(name=request.match_info["name"]))
    return ok(request)


@routes.post("/v1/settings/backup")
@doc(
    "Back up the settings and keys, encrypted with a password",
    request=BackupRequest,
    responses={200: BackupResponse},
    admin=True,
    rpc=True,
    tags=["settings"],
)
async def backup(request: web.Request) -> web.Response:
    require_admin(request)
    body = validate(BackupRequest, await read_json(request))
    result = await rpc(request, contract.BACKUP, contract.BackupRequest(password=body.password), BACKUP_TIMEOUT_S)
    return ok(request, {"settings": {"data": result.data}})


@routes.post("/v1/settings/restore")
@doc("Restore a backup", request=RestoreRequest, admin=True, rpc=True, tags=["settings"])
async def restore(request: web.Request) -> web.Response:
    require_admin(request)
    body = validate(RestoreRequest, await _read_large_json(request))
    await rpc(request, contract.RESTORE, contract.Restore(password=body.password, data=body.data), BACKUP_TIMEOUT_S)
    log.info("restore accepted by coreapp")
    return ok(request)
