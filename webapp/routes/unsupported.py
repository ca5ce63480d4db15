"""``/v1/groups*`` and ``/v1/stickerpacks*``: answered, on every method, with one documented refusal.

The Groups API was deprecated in the original and stickerpacks never had a documented shape; OpenPrem
implements neither.  A 404 would read as "wrong URL", so each documented operation (and anything else under
those prefixes) answers HTTP 400 with code 1009 and a ``details`` naming the unsupported API: a client error
that retrying cannot fix, unlike a 5xx.
"""

from __future__ import annotations

from aiohttp import web

from shared.errors import ApiError, ErrorCode
from webapp.openapi import doc

routes = web.RouteTableDef()

GROUPS_DETAILS = "Groups API is not supported by OpenPrem (deprecated in the original)"
STICKERPACKS_DETAILS = "Stickerpacks API is not supported by OpenPrem"

GROUP_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("GET", "/v1/groups"),
    ("POST", "/v1/groups"),
    ("GET", "/v1/groups/{group_id}"),
    ("PUT", "/v1/groups/{group_id}"),
    ("GET", "/v1/groups/{group_id}/invite"),
    ("DELETE", "/v1/groups/{group_id}/invite"),
    ("PATCH", "/v1/groups/{group_id}/admins"),
    ("DELETE", "/v1/groups/{group_id}/admins"),
    ("DELETE", "/v1/groups/{group_id}/participants"),
    ("POST", "/v1/groups/{group_id}/leave"),
    ("GET", "/v1/groups/{group_id}/icon"),
    ("POST", "/v1/groups/{group_id}/icon"),
    ("DELETE", "/v1/groups/{group_id}/icon"),
)
STICKERPACK_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("GET", "/v1/stickerpacks"),
    ("POST", "/v1/stickerpacks"),
    ("GET", "/v1/stickerpacks/{pack_id}"),
    ("PATCH", "/v1/stickerpacks/{pack_id}"),
    ("DELETE", "/v1/stickerpacks/{pack_id}"),
    ("GET", "/v1/stickerpacks/{pack_id}/stickers"),
    ("POST", "/v1/stickerpacks/{pack_id}/stickers"),
)


@doc(
    "Groups API (not supported)",
    responses={},
    errors=(400,),
    tags=["unsupported"],
)
async def groups(_request: web.Request) -> web.Response:
    raise ApiError(ErrorCode.INVALID_PARAMETER, GROUPS_DETAILS)


@doc(
    "Stickerpacks API (not supported)",
    responses={},
    errors=(400,),
    tags=["unsupported"],
)
async def stickerpacks(_request: web.Request) -> web.Response:
    raise ApiError(ErrorCode.INVALID_PARAMETER, STICKERPACKS_DETAILS)


@doc("Groups API (not supported), any other method or path", hidden=True)
async def groups_catch_all(_request: web.Request) -> web.Response:
    raise ApiError(ErrorCode.INVALID_PARAMETER, GROUPS_DETAILS)


@doc("Stickerpacks API (not supported), any other method or path", hidden=True)
async def stickerpacks_catch_all(_request: web.Request) -> web.Response:
    raise ApiError(ErrorCode.INVALID_PARAMETER, STICKERPACKS_DETAILS)


for _method, _path in GROUP_OPERATIONS:
    routes.route(_method, _path)(groups)
for _method, _path in STICKERPACK_OPERATIONS:
    routes.route(_method, _path)(stickerpacks)
routes.route("*", "/v1/groups/{tail:.*}")(groups_catch_all)
routes.route("*", "/v1/stickerpacks/{tail:.*}")(stickerpacks_catch_all)
