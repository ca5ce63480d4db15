"""``/v1/settings/profile/{about,photo}`` and ``/v1/settings/business/profile`` (reference §2.9; ROLE_ADMIN).

Stored by coreapp (not yet sent to the network).  The photo is a raw ``image/jpeg`` or ``image/png`` body of at
most 5 MB, read as a stream (the JSON body limit is 1 MiB) and checked against its magic bytes.  A business
profile POST sets the fields it names and leaves the others (``""`` or ``[]`` clears one).
"""

from __future__ import annotations

import base64
from typing import Any, Literal, cast

from aiohttp import web

from shared.bus.contract import settings as contract
from shared.bus.rpc import EMPTY
from shared.errors import ApiError, ErrorCode
from shared.profiles import PHOTO_MAX_BYTES, PHOTO_TYPES, About, BusinessProfile
from webapp.envelope import ok, read_json, validate
from webapp.openapi import QueryParam, binary_content, doc
from webapp.routes.common import require_admin, rpc
from webapp.schemas.responses import AboutResponse, BusinessProfileResponse, PhotoLinkResponse

routes = web.RouteTableDef()

ABOUT = "/v1/settings/profile/about"
PHOTO = "/v1/settings/profile/photo"
BUSINESS = "/v1/settings/business/profile"
BUSINESS_DEFAULTS: dict[str, Any] = {"address": "", "description": "", "email": "", "vertical": "", "websites": []}
PHOTO_FORMAT_QUERY = QueryParam("format", {"type": "string"}, "link: answer a URL to this endpoint; else the image")


@routes.get(ABOUT)
@doc("The profile about text", responses={200: AboutResponse}, admin=True, rpc=True, tags=["profile"])
async def get_about(request: web.Request) -> web.Response:
    require_admin(request)
    text = (await rpc(request, contract.GET_PROFILE_ABOUT, EMPTY)).text
    return ok(request, {"settings": {"profile": {"about": {"text": text}}}})


@routes.patch(ABOUT)
@doc("Set the profile about text", request=About, admin=True, rpc=True, tags=["profile"])
async def patch_about(request: web.Request) -> web.Response:
    require_admin(request)
    about = validate(About, await read_json(request))
    await rpc(request, contract.SET_PROFILE_ABOUT, contract.About(text=about.text))
    return ok(request)


@routes.get(PHOTO)
@doc(
    "The profile photo (or, with ?format=link, its URL)",
    query=[PHOTO_FORMAT_QUERY],
    responses={200: PhotoLinkResponse},
    raw_responses={200: binary_content(PHOTO_TYPES)},
    errors=(404,),
    admin=True,
    rpc=True,
    tags=["profile"],
)
async def get_photo(request: web.Request) -> web.StreamResponse:
    """The image with its type; ``?format=link`` answers a URL to this endpoint instead."""
    require_admin(request)
    photo = await rpc(request, contract.GET_PROFILE_PHOTO, EMPTY)
    if request.query.get("format") == "link":
        link = str(request.url.with_query(None))
        return ok(request, {"settings": {"profile": {"photo": {"link": link}}}})
    return web.Response(body=base64.b64decode(photo.data), content_type=photo.content_type)


@routes.post(PHOTO)
@doc(
    "Set the profile photo: raw JPEG or PNG bytes, at most 5 MB",
    raw_body=binary_content(PHOTO_TYPES),
    admin=True,
    rpc=True,
    tags=["profile"],
)
async def post_photo(request: web.Request) -> web.Response:
    require_admin(request)
    content_type = request.content_type
    if content_type not in PHOTO_TYPES:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"Content-Type must be one of {', '.join(PHOTO_TYPES)}")
    data = await _read_capped(request, PHOTO_MAX_BYTES)
    if not data:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "the body must hold the image")
    if not data.startswith(PHOTO_TYPES[content_type]):
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"the body is not a {content_type} image")
    photo = contract.Photo(
        content_type=cast(Literal["image/jpeg", "image/png"], content_type),  # one of PHOTO_TYPES, checked above
        data=base64.b64encode(data).decode("ascii"),
    )
    await rpc(request, contract.SET_PROFILE_PHOTO, photo)
    return ok(request)


@routes.delete(PHOTO)
@doc("Remove the profile photo", admin=True, rpc=True, tags=["profile"])
async def delete_photo(request: web.Request) -> web.Response:
    require_admin(request)
    await rpc(request, contract.DELETE_PROFILE_PHOTO, EMPTY)
    return ok(request)


@routes.get(BUSINESS)
@doc("The business profile", responses={200: BusinessProfileResponse}, admin=True, rpc=True, tags=["profile"])
async def get_business_profile(request: web.Request) -> web.Response:
    require_admin(request)
    stored = (await rpc(request, contract.GET_BUSINESS_PROFILE, EMPTY)).profile
    return ok(request, {"settings": {"business": {"profile": {**BUSINESS_DEFAULTS, **stored}}}})


@routes.post(BUSINESS)
@doc(
    "Set business profile fields (those left out stay)",
    request=BusinessProfile,
    admin=True,
    rpc=True,
    tags=["profile"],
)
async def post_business_profile(request: web.Request) -> web.Response:
    require_admin(request)
    profile = validate(BusinessProfile, await read_json(request))
    payload = contract.BusinessProfile(profile=profile.model_dump(exclude_unset=True))
    await rpc(request, contract.SET_BUSINESS_PROFILE, payload)
    return ok(request)


async def _read_capped(request: web.Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading them all."""
    too_big = ApiError(ErrorCode.INVALID_PARAMETER, f"the image is larger than {limit // (1024 * 1024)} MB")
    if (request.content_length or 0) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
