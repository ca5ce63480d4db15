"""The media store: encrypted blobs by id on an HTTPS host, kept 14 days by the sandbox clock (SANDBOX.md).

Like WhatsApp's media hosts it only ever sees ciphertext (``shared.wire.media``).  A business uploads with the
bearer token it got in ``LoginOk.media_token`` (``POST /media`` → ``{"id", "url", "direct_path"}``); anyone
holding the URL may download (``GET /media/{id}``): ids are 256-bit random, so the URL is the capability.
Phones live in this process and use ``put``/``get`` directly.  Blobs are files under ``<data_dir>/media``;
their metadata (owner, size, upload time) is a document in chatd's store.  Expired blobs answer 404 and are
removed when asked for and at start.

Faults (``chatd.faults``): ``slow_media {seconds}`` makes the HTTPS host answer each upload and download only
after that long (the phones, which use ``put``/``get`` in-process, are not slowed); ``expire_media`` makes every
blob count as expired while it is set, exactly like one past its 14 days: 404, and removed when asked for, so
clearing the fault does not bring it back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import IO, Any

from aiohttp import hdrs, web

from chatd.clock import Clock
from chatd.faults import Faults
from chatd.store import Store
from shared.wire.media import MEDIA_MESSAGE_TYPES, MediaError, MediaKeys, decrypt_media, encrypt_media

log = logging.getLogger("openprem.chatd.media")

RETENTION_S = 14 * 24 * 3600
TOKEN_TTL_S = 7 * 24 * 3600
MAX_BLOB_BYTES = 128 * 1024 * 1024
_CHUNK = 256 * 1024
_BLOB_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_KIND = "media"


def _digest(token: str) -> bytes:
    # Tokens are looked up by their hash, so no secret is ever compared with ``==``.
    return hashlib.sha256(token.encode()).digest()


class MediaStore:
    def __init__(
        self, root: Path, store: Store, clock: Clock, server_name: str, *, faults: Faults | None = None
    ) -> None:
        self._faults = faults if faults is not None else Faults(clock.now)
        self._root = root
        self._store = store
        self._clock = clock
        self._server_name = server_name
        self._blobs: dict[str, dict[str, object]] = {}
        self._tokens: dict[bytes, tuple[str, float]] = {}
        self.port = 0

    async def load(self) -> None:
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)
        for key, body in await self._store.load(_KIND):
            self._blobs[key] = json.loads(body)
        for blob_id in [b for b in self._blobs if self._expired(b)]:
            await self._remove(blob_id)

    # --- tokens -----------------------------------------------------------------------------------------

    def grant(self, wa_id: str) -> tuple[str, float]:
        """A new upload token for a business and when it expires on the sandbox clock (``LoginOk``, ``MediaConn``)."""
        now = self._clock.now()
        self._tokens = {k: v for k, v in self._tokens.items() if v[1] > now}
        token, expires_at = secrets.token_urlsafe(32), now + TOKEN_TTL_S
        self._tokens[_digest(token)] = (wa_id, expires_at)
        return token, expires_at

    def _owner(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        entry = self._tokens.get(_digest(token.strip()))
        return entry[0] if entry is not None and entry[1] > self._clock.now() else None

    # --- blobs ------------------------------------------------------------------------------------------

    def url(self, blob_id: str) -> str:
        return f"https://{self._server_name}:{self.port}{direct_path(blob_id)}"

    async def put(self, data: bytes, owner: str) -> str:
        """Store a blob (phones sending media); returns its id."""
        blob_id = secrets.token_urlsafe(32)
        await asyncio.to_thread(self._write_sync, blob_id, data)
        await self._record(blob_id, owner, len(data))
        return blob_id

    async def get(self, blob_id: str) -> bytes | None:
        """A live blob's bytes (phones receiving media); ``None`` when unknown or expired."""
        path = await self._live_path(blob_id)
        if path is None:
            return None
        with contextlib.suppress(FileNotFoundError):
            return await asyncio.to_thread(path.read_bytes)
        return None

    def _expired(self, blob_id: str) -> bool:
        if self._faults.media_expired():
            return True
        created = self._blobs[blob_id].get("created_at", 0)
        return not isinstance(created, int | float) or created + RETENTION_S <= self._clock.now()

    async def _live_path(self, blob_id: str) -> Path | None:
        if not _BLOB_ID.match(blob_id) or blob_id not in self._blobs:
            return None
        if self._expired(blob_id):
            why = "expire_media fault" if self._faults.media_expired() else f"kept {RETENTION_S // 86400} days"
            log.info("media %s expired (%s)", blob_id, why)
            await self._remove(blob_id)
            return None
        return self._root / blob_id

    async def _record(self, blob_id: str, owner: str, size: int) -> None:
        doc: dict[str, object] = {"owner": owner, "size": size, "created_at": self._clock.now()}
        self._blobs[blob_id] = doc
        self._store.put(_KIND, blob_id, json.dumps(doc))
        await self._store.sync()

    async def _remove(self, blob_id: str) -> None:
        self._blobs.pop(blob_id, None)
        self._store.delete(_KIND, blob_id)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread((self._root / blob_id).unlink)

    def _write_sync(self, blob_id: str, data: bytes) -> None:
        part = self._root / f".{blob_id}.part"
        part.write_bytes(data)
        os.replace(part, self._root / blob_id)

    # --- HTTPS ------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)  # uploads stream request.content instead
        app.router.add_post("/media", self._upload)
        app.router.add_get("/media/{blob_id}", self._download)
        return app

    async def _slow(self) -> None:
        delay = self._faults.media_delay()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _upload(self, request: web.Request) -> web.Response:
        await self._slow()
        owner = self._owner(request)
        if owner is None:
            return web.json_response({"error": "a valid media token is required"}, status=401)
        if (request.content_length or 0) > MAX_BLOB_BYTES:
            return web.json_response({"error": f"blob larger than {MAX_BLOB_BYTES} bytes"}, status=413)
        blob_id = secrets.token_urlsafe(32)
        part = self._root / f".{blob_id}.part"
        handle: IO[bytes] = await asyncio.to_thread(open, part, "xb")
        size = 0
        try:
            async for chunk in request.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > MAX_BLOB_BYTES:
                    return web.json_response({"error": f"blob larger than {MAX_BLOB_BYTES} bytes"}, status=413)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, part, self._root / blob_id)
        finally:
            if not handle.closed:
                await asyncio.to_thread(handle.close)
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(part.unlink)
        await self._record(blob_id, owner, size)
        log.info("media %s uploaded by +%s (%d bytes)", blob_id, owner, size)
        return web.json_response({"id": blob_id, "url": self.url(blob_id), "direct_path": direct_path(blob_id)})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        await self._slow()
        path = await self._live_path(request.match_info["blob_id"])
        if path is None:
            return web.json_response({"error": "media not found or expired"}, status=404)
        return web.FileResponse(path, headers={hdrs.CONTENT_TYPE: "application/octet-stream"})


def direct_path(blob_id: str) -> str:
    return f"/media/{blob_id}"


def blob_id_of(path: str) -> str | None:
    """The blob id in a ``direct_path`` (``/media/<id>``), or ``None`` if it is not one of ours."""
    prefix, _, blob_id = path.rpartition("/")
    return blob_id if prefix == "/media" and _BLOB_ID.match(blob_id) else None


# --- what phones do with media (they live in this process and use the store directly) -------------------


async def seal(store: MediaStore, owner: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A phone's outgoing ``{"data_b64", "mime_type", "caption"?, "filename"?}`` → the encrypted media object."""
    mime = obj.get("mime_type")
    if not isinstance(mime, str) or not mime:
        raise MediaError(f"'{kind}.mime_type' is required with '{kind}.data_b64'")
    try:
        data = base64.b64decode(str(obj.get("data_b64", "")), validate=True)
    except (ValueError, binascii.Error):
        raise MediaError(f"'{kind}.data_b64' is not valid base64") from None
    blob, keys = await asyncio.to_thread(encrypt_media, data, kind)
    blob_id = await store.put(blob, owner)
    extra = {k: obj[k] for k in ("caption", "filename") if isinstance(obj.get(k), str)}
    return {
        "url": store.url(blob_id),
        "direct_path": direct_path(blob_id),
        "mime_type": mime,
        **keys.to_content(),
        **extra,
    }


async def open_media(store: MediaStore | None, content: dict[str, Any]) -> dict[str, Any]:
    """A decrypted media message as the phone shows it: download, decrypt, check; ``MediaError`` on failure.

    The inbox keeps what a test compares (``sha256`` of the plaintext, ``mime_type``, ``file_length``,
    ``caption``, ``filename``), never the key.  Other messages come back unchanged.
    """
    kind = content.get("type")
    if kind not in MEDIA_MESSAGE_TYPES:
        return content
    obj = content.get(str(kind))
    if not isinstance(obj, dict):
        raise MediaError(f"{kind} message without a media object")
    if store is None:
        raise MediaError("no media store")
    keys = MediaKeys.from_content(obj)
    blob_id = blob_id_of(str(obj.get("direct_path", "")))
    if blob_id is None:
        raise MediaError("media object has no usable direct_path")
    blob = await store.get(blob_id)
    if blob is None:
        raise MediaError("media not found on the media host (expired or never uploaded)")
    data = await asyncio.to_thread(decrypt_media, blob, keys.media_key, str(kind), keys.sha256, keys.enc_sha256)
    shown = {k: obj[k] for k in ("caption", "filename") if k in obj}
    received = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "mime_type": obj.get("mime_type"),
        "file_length": len(data),
        "media_id": blob_id,
        **shown,
    }
    return {**content, str(kind): received}
