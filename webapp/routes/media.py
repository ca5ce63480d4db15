"""``/v1/media``: upload (raw body, its ``Content-Type`` the media type), download and delete (reference §2.7).

Uploads are streamed from ``request.content`` to the media volume, never read whole: aiohttp's
``client_max_size`` (1 MiB, for JSON) only limits ``request.read()``, and our own limit is
``WA_MEDIA_MAX_UPLOAD_BYTES``.  The first bytes are checked against the declared type before anything is
written.  Errors, all 1009 "Parameter value is not valid" with a detail saying what is wrong:
  - body over the limit → HTTP 413 (the partial file is removed);
  - declared type not on the WhatsApp allow-list → HTTP 415;
  - bytes that do not match the declared type, or an empty body → HTTP 400.
A missing ``Content-Type`` is 1008.  Ids are UUIDs; anything else in ``{id}`` is 404 / 1006 like an unknown id.

An upload may carry an ``Idempotency-Key`` (``shared.idempotency``): the file is stored as usual, then the key is
claimed in ``web_media_idempotency`` with the fingerprint of (media type, SHA-256 of the bytes).  A key already
held for the same upload answers its media id and the new copy is deleted; for other bytes or another type it is
409 / 1004 (the new copy deleted too).  Only a success is remembered: a refused upload may be retried as it is.

Disk space (``webapp.disk``): an upload is refused with 1016 "System overloaded" / HTTP 503 before a byte is
written while the media or data directory is under ``WA_DISK_MIN_FREE_MB`` (or the declared length would take it
there), and mid-way when a re-check every ``DISK_RECHECK_BYTES`` or the file system itself (``ENOSPC``) says so;
the partial file is removed either way.
"""

from __future__ import annotations

import errno
import logging
from datetime import UTC, datetime

from aiohttp import hdrs, web

from shared.errors import ApiError, ErrorCode
from shared.idempotency import HEADER, TTL, fingerprint, key_digest
from shared.media_files import MediaFiles, MediaMeta, is_media_id
from shared.media_types import ALLOWED_TYPES, HEAD_BYTES, MediaTypeError, check, normalize
from webapp.envelope import HttpApiError, ok
from webapp.openapi import binary_content, doc
from webapp.routes.common import IDEMPOTENCY_KEY, idempotency_key
from webapp.schemas.responses import MediaUploadResponse
from webapp.state import DISK_KEY, WEB_SETTINGS_KEY
from webapp.storage import MediaKey, WebStorage

log = logging.getLogger("openprem.webapp.media")

MEDIA_FILES_KEY = web.AppKey("openprem.media_files", MediaFiles)
MEDIA_KEYS_KEY = web.AppKey("openprem.media_keys", WebStorage)
"""Where upload keys are claimed (set by ``WebApp.start``)."""
CHUNK_BYTES = 256 * 1024
DISK_RECHECK_BYTES = 4 * 1024 * 1024
"""Free space is measured again after this many bytes of one upload (a statvfs in a thread)."""
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})

routes = web.RouteTableDef()


def _too_large(limit: int) -> HttpApiError:
    return HttpApiError(
        ErrorCode.INVALID_PARAMETER,
        f"media is larger than the upload limit of {limit} bytes (WA_MEDIA_MAX_UPLOAD_BYTES)",
        status=413,
    )


def _type_error(exc: MediaTypeError) -> HttpApiError:
    return HttpApiError(ErrorCode.INVALID_PARAMETER, str(exc), status=415 if exc.unsupported else 400)


def _not_found(media_id: str) -> ApiError:
    shown = media_id if is_media_id(media_id) else "(not a media id)"
    return ApiError(ErrorCode.NOT_FOUND, f"media {shown} not found")


@routes.post("/v1/media")
@doc(
    "Upload media: the raw bytes, the Content-Type naming their type",
    raw_body=binary_content(ALLOWED_TYPES),
    responses={201: MediaUploadResponse},
    errors=(409, 415, 503),
    headers=[IDEMPOTENCY_KEY],
    tags=["media"],
)
async def upload(request: web.Request) -> web.Response:
    key = idempotency_key(request)
    limit = request.app[WEB_SETTINGS_KEY].max_upload_bytes
    declared = request.headers.get(hdrs.CONTENT_TYPE, "").strip()
    if not declared:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "the Content-Type header must name the media type")
    try:
        normalize(declared)
    except MediaTypeError as exc:
        raise _type_error(exc) from None
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    await request.app[DISK_KEY].ensure_room(request.content_length or 0)
    try:
        meta = await _store(request, declared, limit)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        log.warning("media upload refused: the media volume is full (%s)", exc.strerror)
        raise HttpApiError(
            ErrorCode.OVERLOADED, "the media volume is full; free some space and retry", status=503
        ) from None
    media_id = meta.id if key is None else await _claim(request, key, meta)
    if media_id == meta.id:
        log.info("media %s stored: %s, %d bytes", meta.id, meta.mime_type, meta.size)
    return ok(request, {"media": [{"id": media_id}]}, status=201)


async def _claim(request: web.Request, key: str, meta: MediaMeta) -> str:
    """The media id ``key`` stands for: ``meta``'s, or the one an earlier identical upload stored (this copy is
    then deleted); 409 / 1004 when the key was used for another upload."""
    claim = MediaKey(key_digest(key), fingerprint({"mime_type": meta.mime_type, "sha256": meta.sha256}), meta.id)
    # A failed claim keeps the file: its COMMIT may have happened, and then the key names this very file.
    held = await request.app[MEDIA_KEYS_KEY].claim_media_key(claim, datetime.now(UTC) - TTL)
    if held.media_id == meta.id:
        return meta.id
    await request.app[MEDIA_FILES_KEY].delete(meta.id)
    if held.request_sha256 != claim.request_sha256:
        raise ApiError(
            ErrorCode.RESOURCE_EXISTS,
            f"this {HEADER} was used within {TTL.total_seconds() / 3600:.0f} h for another upload; use a new key "
            "for new media",
        )
    log.info("media upload repeated with its %s: answered %s again", HEADER, held.media_id)
    return held.media_id


async def _store(request: web.Request, declared: str, limit: int) -> MediaMeta:
    """Stream the body to a new file: sniff the head, then write chunk by chunk up to ``limit``."""
    chunks = request.content.iter_chunked(CHUNK_BYTES)
    head = bytearray()
    async for chunk in chunks:
        head += chunk
        if len(head) > limit:
            raise _too_large(limit)
        if len(head) >= HEAD_BYTES:
            break
    if not head:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "the request body is empty; send the media bytes")
    try:
        mime = check(declared, bytes(head))
    except MediaTypeError as exc:
        raise _type_error(exc) from None
    disk = request.app[DISK_KEY]
    writer = await request.app[MEDIA_FILES_KEY].open_writer()
    try:
        await writer.write(bytes(head))
        checked = writer.size
        async for chunk in chunks:
            if writer.size + len(chunk) > limit:
                raise _too_large(limit)
            await writer.write(chunk)
            if writer.size - checked >= DISK_RECHECK_BYTES:
                await disk.ensure_room()
                checked = writer.size
        return await writer.commit(mime)
    finally:
        await writer.abort()


@routes.get("/v1/media/{media_id}")
@doc(
    "Download media: the bytes with their media type",
    responses={},
    raw_responses={200: binary_content(ALLOWED_TYPES)},
    tags=["media"],
)
async def download(request: web.Request) -> web.StreamResponse:
    media_id = request.match_info["media_id"]
    files = request.app[MEDIA_FILES_KEY]
    meta = await files.meta(media_id)
    if meta is None:
        raise _not_found(media_id)
    return web.FileResponse(files.blob_path(media_id), headers={hdrs.CONTENT_TYPE: meta.mime_type})


@routes.delete("/v1/media/{media_id}")
@doc("Delete media", tags=["media"])
async def delete(request: web.Request) -> web.Response:
    media_id = request.match_info["media_id"]
    if not await request.app[MEDIA_FILES_KEY].delete(media_id):
        raise _not_found(media_id)
    log.info("media %s deleted", media_id)
    return ok(request)
