"""``/v1/settings/profile/{about,photo}``, ``/v1/settings/business/profile`` and
``/v1/settings/business/compliance_info`` (reference §2.9; ROLE_ADMIN).

Stored by coreapp (not yet sent to the network).  The photo is a raw ``image/jpeg`` or ``image/png`` body of at
most 5 MB, read as a stream (the JSON body limit is 1 MiB) and checked against its magic bytes.  A business
profile POST sets the fields it names and leaves the others (``""`` or ``[]`` clears one); a compliance info POST
replaces the whole document (``shared.profiles.ComplianceInfo``: entity name and type, registration, grievance
officer and customer care contacts), and GET answers 404 (1006) until one is set.
"""

from __future__ import annotations

import base64
from typing import Any, Literal, cast

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from shared.bus.contract import settings as contract
from shared.bus.rpc import EMPTY
from shared.errors import ApiError, ErrorCode
from shared.profiles import PHOTO_MAX_BYTES, PHOTO_TYPES, About, BusinessProfile, ComplianceInfo
from webapp.envelope import ok, read_json, validate
from webapp.openapi import QueryParam, binary_content, doc
from webapp.routes.common import require_admin, rpc
from webapp.schemas.responses import (
    AboutResponse,
    BusinessProfileResponse,
    ComplianceInfoResponse,
    PhotoLinkResponse,
)

routes = web.RouteTableDef()

ABOUT = "/v1/settings/profile/about"
PHOTO = "/v1/settings/profile/photo"
BUSINESS = "/v1/settings/business/profile"
COMPLIANCE = "/v1/settings/business/compliance_info"
BUSINESS_DEFAULTS: dict[str, Any] = {"address": "", "description": "", "email": "", "vertical": "", "websites": []}
MULTIPART = "multipart/form-data"
MULTIPART_PHOTO = {
    "type": "object",
    "properties": {"file": {"type": "string", "format": "binary"}},
    "required": ["file"],
}
"""The form upload: the first part with a filename is the image (any field name; ``file`` in the document)."""
MAX_SKIPPED_PART_BYTES = 64 * 1024
"""Form fields before the file part are read to the void, up to this much in all."""
_PHOTO_MB = PHOTO_MAX_BYTES // (1024 * 1024)
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
    "Set the profile photo: raw JPEG or PNG bytes (or a multipart/form-data file part), at most 5 MB",
    raw_body={**binary_content(PHOTO_TYPES), MULTIPART: MULTIPART_PHOTO},
    admin=True,
    rpc=True,
    tags=["profile"],
)
async def post_photo(request: web.Request) -> web.Response:
    """The image as the body, or as the first file part of a ``multipart/form-data`` body (what form uploads and
    Postman send): the part's own ``Content-Type`` then names the type, or its magic bytes when it says only
    ``application/octet-stream``.  Same checks and errors either way."""
    require_admin(request)
    if request.content_type == MULTIPART:
        content_type, data = await _photo_part(request)
    else:
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


@routes.get(COMPLIANCE)
@doc(
    "The business compliance info (legal entity details)",
    responses={200: ComplianceInfoResponse},
    errors=(404,),
    admin=True,
    rpc=True,
    tags=["profile"],
)
async def get_compliance_info(request: web.Request) -> web.Response:
    require_admin(request)
    info = (await rpc(request, contract.GET_COMPLIANCE_INFO, EMPTY)).info
    return ok(request, {"settings": {"business": {"compliance_info": info}}})


@routes.post(COMPLIANCE)
@doc(
    "Set the business compliance info (replaces the stored document)",
    request=ComplianceInfo,
    admin=True,
    rpc=True,
    tags=["profile"],
)
async def post_compliance_info(request: web.Request) -> web.Response:
    require_admin(request)
    info = validate(ComplianceInfo, await read_json(request))
    await rpc(request, contract.SET_COMPLIANCE_INFO, contract.ComplianceInfo(info=info.stored()))
    return ok(request)


async def _photo_part(request: web.Request) -> tuple[str, bytes]:
    """``(content type, bytes)`` of the first file part (one with a filename); other parts are skipped, capped."""
    try:
        reader = await request.multipart()
        skipped = 0
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.filename is not None:
                data = await _read_part(part, PHOTO_MAX_BYTES, f"the image is larger than {_PHOTO_MB} MB")
                return _part_type(part.headers.get(hdrs.CONTENT_TYPE), data), data
            skipped += len(
                await _read_part(
                    part, MAX_SKIPPED_PART_BYTES - skipped, "the form fields before the file part are too large"
                )
            )
    except (ValueError, HttpProcessingError, RuntimeError) as exc:  # a malformed body: boundaries, headers
        why = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
        raise ApiError(ErrorCode.INVALID_REQUEST, f"not a valid multipart/form-data body: {why}") from None
    raise ApiError(ErrorCode.MISSING_PARAMETER, "the multipart body has no file part with the image")


def _part_type(declared: str | None, data: bytes) -> str:
    """The photo type a file part declares; form clients that know no better say ``application/octet-stream``,
    so then the bytes decide (the magic check that follows holds either way)."""
    media_type = (declared or "application/octet-stream").split(";")[0].strip().lower()
    if media_type in PHOTO_TYPES:
        return media_type
    if media_type == "application/octet-stream":
        for candidate, magic in PHOTO_TYPES.items():
            if data.startswith(magic):
                return candidate
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"the file part is not one of {', '.join(PHOTO_TYPES)}")
    raise ApiError(ErrorCode.INVALID_PARAMETER, f"the file part's Content-Type must be one of {', '.join(PHOTO_TYPES)}")


async def _read_part(part: BodyPartReader | MultipartReader, limit: int, too_big: str) -> bytes:
    """A part's bytes, refusing more than ``limit``."""
    if isinstance(part, MultipartReader):
        raise ApiError(ErrorCode.INVALID_REQUEST, "nested multipart bodies are not supported")
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(ErrorCode.INVALID_PARAMETER, too_big)
        chunks.append(chunk)
    return b"".join(chunks)


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
