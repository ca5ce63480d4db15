"""Media in coreapp: prepare files for sending (encrypt + upload) and fetch received ones (download + decrypt).

Sending: the file comes from the media volume (an id from ``POST /v1/media``) or from a ``link`` (optionally with
a configured provider's bearer or basic credentials), fetched by ``media_links.LinkFetcher`` from public addresses
only (no server-side request forgery); it is encrypted with a fresh media key
(``shared.wire.media``) and uploaded to the network's media host, and the message carries
``{"url", "direct_path", "media_key" (base64), "sha256", "enc_sha256" (hex), "mime_type", "file_length",
"caption"?, "filename"?}``.  Every failure is synchronous (the send is refused before a message id exists):
unknown id → 1006; link not fetched → 1009 "media could not be fetched" (the reason in the log); wrong type → 1009
with the reason; media host unreachable → 1011.

Receiving: per ``media.auto_download`` the blob is fetched from the media host by ``direct_path``, checked and
decrypted, and stored on the media volume under a new id; the webhook's media object is
``{"id", "mime_type", "sha256", "file", "caption"?, "filename"?}`` (reference §3.1).  A failed download still
delivers the message, with ``errors: [{"code": 400, "title": "Media download error"}]`` and no ``id``.

The media host is ``https://<WA_CHAT_HOSTNAME>:<port>``, port from ``WA_CHAT_MEDIA_PORT`` or, unset, as announced
in ``LoginOk``; TLS trusts ``WA_CHAT_CA_FILE`` and checks ``WA_CHAT_SERVERNAME``, like the chat connection.

Network time: the upload token (``LoginOk``, 7 days on the network's clock) is renewed with ``GetMediaConn``
when the network's clock says it expired, or when the host refuses it (401), and the upload retried once.  An
uploaded file is reused for further sends of the same media id while its upload is younger than
``REUSE_UPLOAD_S`` on the network's clock (the host keeps files 14 days; half of that leaves a recipient who is
offline a week time to fetch it), then encrypted and uploaded again.  Both follow ``server_now()``, so in the
sandbox they follow chatd's clock, which tests advance by days.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.services.media_links import LinkFetcher, TooLarge, read_limited
from coreapp.storage.settings import SettingsStore
from shared.config import ChatSettings
from shared.errors import ApiError, ErrorCode
from shared.media_files import MediaFiles, is_media_id
from shared.media_types import MediaTypeError, allowed_for_message, check, detect, normalize
from shared.wire.frames import Frame, GetMediaConn, LoginOk, MediaConn
from shared.wire.media import MEDIA_MESSAGE_TYPES, MediaError, MediaKeys, decrypt_media, encrypt_media

log = logging.getLogger("openprem.coreapp.media")

DOWNLOAD_TIMEOUT_S = 120.0
LOGIN_WAIT_S = 10.0
_DIRECT_PATH = re.compile(r"^/[A-Za-z0-9_./-]{1,512}$")
_SHOWN = ("caption", "filename")
REUSE_UPLOAD_S = 7 * 24 * 3600
TOKEN_MARGIN_S = 60.0
MAX_REUSED_UPLOADS = 1024


class MediaLink(Protocol):
    """What media needs of the chat connection: a request (``GetMediaConn``) and the network's clock."""

    async def request(self, frame: Frame, timeout_s: float = 30.0) -> Frame: ...

    def server_now(self) -> float: ...


class MediaLinkSource(Protocol):
    """Where the current chat connection is found (``coreapp.scope.CurrentChat``; ``None`` while there is none)."""

    @property
    def link(self) -> MediaLink | None: ...


@dataclass(frozen=True, slots=True)
class _Upload:
    content: dict[str, Any]  # url, direct_path, keys, mime_type
    uploaded_at: float  # network time


class _TokenRefused(Exception):
    pass


def _invalid(details: str) -> ApiError:
    return ApiError(ErrorCode.INVALID_PARAMETER, details)


class MediaService:
    def __init__(
        self,
        chat: ChatSettings,
        media_dir: Path,
        settings: SettingsStore,
        max_bytes: int,
        links: MediaLinkSource,
        fetcher: LinkFetcher,
    ) -> None:
        self._chat = chat
        self._fetcher = fetcher
        self._files = MediaFiles(media_dir)
        self._settings = settings
        self._max_bytes = max_bytes
        self._token = ""
        self._token_expires_at = 0.0
        self._announced_port = 0
        self._links = links
        self._renewing = asyncio.Lock()
        self._uploads: OrderedDict[tuple[str, str], _Upload] = OrderedDict()
        self._logged_in = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    async def close(self) -> None:
        await self._fetcher.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def on_login(self, login: LoginOk) -> None:
        """Sync step of the chat connection: the media token and port this session got (never logged)."""
        self._token, self._announced_port = login.media_token, login.media_port
        self._token_expires_at = login.media_token_expires_at
        self._logged_in.set()

    def _network_now(self) -> float | None:
        link = self._links.link
        return link.server_now() if link is not None else None

    async def _current_token(self, refused: str | None = None) -> str:
        """The upload token, renewed first when it was refused (``refused`` is that token) or has expired."""
        async with self._renewing:  # one renewal for concurrent uploads
            now = self._network_now()
            stale = refused is not None and refused == self._token
            ends = self._token_expires_at - TOKEN_MARGIN_S
            expired = bool(self._token_expires_at) and now is not None and now >= ends
            link = self._links.link
            if (stale or expired or not self._token) and link is not None:
                try:
                    reply = await link.request(GetMediaConn())
                except (ChatUnavailable, ChatRemoteError) as exc:  # the send answers 1011; the client retries
                    raise ApiError(ErrorCode.NOT_READY, "could not renew the media host token") from exc
                if not isinstance(reply, MediaConn) or not reply.token:
                    raise ApiError(ErrorCode.NOT_READY, "the network gave no media host token")
                self._token, self._token_expires_at = reply.token, reply.expires_at
                self._announced_port = reply.port or self._announced_port
                log.info("media host token renewed (%s)", "refused" if stale else "expired" if expired else "missing")
            return self._token

    # --- plumbing -------------------------------------------------------------------------------------------

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            ca = self._chat.ca_file
            tls = await asyncio.to_thread(ssl.create_default_context, cafile=str(ca) if ca else None)
            if self._session is None:  # another caller may have finished first while the CA loaded
                timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S, sock_connect=self._chat.connect_timeout_s)
                self._ssl, self._session = tls, aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def _tls(self) -> ssl.SSLContext:
        await self._http()
        assert self._ssl is not None
        return self._ssl

    async def _media_host(self) -> str:
        port = self._chat.media_port
        if port is None:
            if not self._logged_in.is_set():
                try:
                    async with asyncio.timeout(LOGIN_WAIT_S):
                        await self._logged_in.wait()
                except TimeoutError:
                    raise ApiError(ErrorCode.NOT_READY, "not logged in to the network yet") from None
            port = self._announced_port
        if not port:
            raise ApiError(ErrorCode.NOT_READY, "the network announced no media host; set WA_CHAT_MEDIA_PORT")
        host = self._chat.host
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    # --- sending --------------------------------------------------------------------------------------------

    async def prepare_outbound(self, message_type: str, media: dict[str, Any]) -> dict[str, Any]:
        """The content media object for ``media`` (``{"id"|"link", "caption"?, "filename"?, "provider"?}``)."""
        if message_type not in MEDIA_MESSAGE_TYPES:
            raise _invalid(f"{message_type} is not a media message type")
        media_id, link = media.get("id"), media.get("link")
        if media_id and link:
            raise _invalid(f"{message_type}: give either id or link, not both")
        shown = {k: media[k] for k in _SHOWN if isinstance(media.get(k), str)}
        if isinstance(media_id, str) and media_id:
            mime, data = await self._uploaded(message_type, media_id)
            reused = self._reusable((media_id, message_type))
            if reused is not None:
                return {**reused, **shown}
        elif isinstance(link, str) and link:
            declared, data = await self._fetcher.fetch(message_type, link, media.get("provider"))
            mime = _type_of(message_type, declared, data)
        else:
            raise ApiError(ErrorCode.MISSING_PARAMETER, f"{message_type}: id or link is required")
        if not allowed_for_message(message_type, mime):
            raise _invalid(f"{message_type}: media of type {mime} cannot be sent as {message_type}")
        blob, keys = await asyncio.to_thread(encrypt_media, data, message_type)
        content = {**await self._upload(blob), "mime_type": mime, **keys.to_content()}
        if isinstance(media_id, str) and media_id:
            self._remember((media_id, message_type), content)
        return {**content, **shown}

    def _reusable(self, key: tuple[str, str]) -> dict[str, Any] | None:
        """An earlier upload of this file that the host still keeps long enough, by the network's clock."""
        found, now = self._uploads.get(key), self._network_now()
        if found is None or now is None:
            return None
        if now - found.uploaded_at >= REUSE_UPLOAD_S:
            del self._uploads[key]
            return None
        self._uploads.move_to_end(key)
        return found.content

    def _remember(self, key: tuple[str, str], content: dict[str, Any]) -> None:
        now = self._network_now()
        if now is None:
            return
        self._uploads[key] = _Upload(content, now)
        self._uploads.move_to_end(key)
        while len(self._uploads) > MAX_REUSED_UPLOADS:
            self._uploads.popitem(last=False)

    async def _uploaded(self, message_type: str, media_id: str) -> tuple[str, bytes]:
        found = await self._files.read(media_id) if is_media_id(media_id) else None
        if found is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"{message_type}.id: media not found")
        meta, data = found
        return meta.mime_type, data

    async def _upload(self, blob: bytes) -> dict[str, str]:
        host = await self._media_host()
        token = await self._current_token()
        try:
            return await self._post(host, token, blob)
        except _TokenRefused:
            token = await self._current_token(refused=token)
        try:
            return await self._post(host, token, blob)
        except _TokenRefused:
            raise ApiError(ErrorCode.NOT_READY, "the media host refused the upload token (HTTP 401)") from None

    async def _post(self, host: str, token: str, blob: bytes) -> dict[str, str]:
        http, tls = await self._http(), await self._tls()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
        try:
            async with http.post(
                f"{host}/media", data=blob, headers=headers, ssl=tls, server_hostname=self._chat.server_name
            ) as resp:
                if resp.status == 401:
                    raise _TokenRefused
                body = await resp.json(content_type=None) if resp.status == 200 else None
                if not isinstance(body, dict):
                    log.warning("media host refused an upload: HTTP %d", resp.status)
                    raise ApiError(ErrorCode.NOT_READY, f"the media host refused the upload (HTTP {resp.status})")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("media upload failed: %s", type(exc).__name__)
            raise ApiError(ErrorCode.NOT_READY, "the media host is unreachable") from None
        return {"url": str(body.get("url", "")), "direct_path": str(body.get("direct_path", ""))}

    # --- receiving ------------------------------------------------------------------------------------------

    async def receive(self, content: dict[str, Any]) -> dict[str, Any]:
        """The content as the webhook shows it: media downloaded per ``auto_download``, keys and URLs removed."""
        kind = content.get("type")
        obj = content.get(str(kind))
        if kind not in MEDIA_MESSAGE_TYPES or not isinstance(obj, dict):
            return content
        kind = str(kind)
        shown: dict[str, Any] = {k: obj[k] for k in _SHOWN if isinstance(obj.get(k), str)}
        shown["mime_type"] = str(obj.get("mime_type", "application/octet-stream"))
        if isinstance(obj.get("sha256"), str):
            shown["sha256"] = obj["sha256"]
        if kind not in (await self._settings.get_application()).media.auto_download:
            return {**content, kind: shown}
        try:
            meta = await self._download(kind, obj)
        except (MediaError, ApiError) as exc:
            log.warning("could not download received %s media: %s", kind, exc)
            error = {"code": ErrorCode.MEDIA_DOWNLOAD_ERROR.code, "title": ErrorCode.MEDIA_DOWNLOAD_ERROR.title}
            return {**content, kind: shown, "errors": [{**error, "details": str(exc)}]}
        received = {**shown, "id": meta.id, "mime_type": meta.mime_type, "sha256": meta.sha256}
        received["file"] = str(self._files.blob_path(meta.id).resolve())
        return {**content, kind: received}

    async def _download(self, kind: str, obj: dict[str, Any]) -> Any:
        keys = MediaKeys.from_content(obj)
        path = obj.get("direct_path")
        if not isinstance(path, str) or not _DIRECT_PATH.match(path) or ".." in path:
            raise MediaError("the media object has no usable direct_path")
        host = await self._media_host()
        http, tls = await self._http(), await self._tls()
        try:
            async with http.get(f"{host}{path}", ssl=tls, server_hostname=self._chat.server_name) as resp:
                if resp.status != 200:
                    raise MediaError(f"the media host answered HTTP {resp.status}")
                blob = await read_limited(resp, 2 * self._max_bytes)
        except TooLarge:
            raise MediaError("the encrypted file is too large") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaError(f"the media host is unreachable ({type(exc).__name__})") from None
        data = await asyncio.to_thread(decrypt_media, blob, keys.media_key, kind, keys.sha256, keys.enc_sha256)
        declared = str(obj.get("mime_type", ""))
        try:
            mime = normalize(declared)
        except MediaTypeError:
            mime = detect(data) or "application/octet-stream"
        return await self._files.save(data, mime)


def _type_of(message_type: str, declared: str, data: bytes) -> str:
    """A link's media type: its ``Content-Type`` when allowed and matching the bytes, else sniffed."""
    try:
        return check(declared, data)
    except MediaTypeError:
        sniffed = detect(data)
    if sniffed is None:
        raise _invalid(f"{message_type}.link: the file is not of a supported media type")
    return sniffed
