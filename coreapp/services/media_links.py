"""Fetching a media ``link`` of ``POST /v1/messages``: the caller names the URL, so it must not reach inside.

Only http(s) to addresses ``shared.netguard`` allows (public ones, plus ``WA_FETCH_ALLOW``), connected to the
address that was checked; redirects are followed by hand, each hop checked again, at most ``MAX_REDIRECTS``; the
whole fetch (hops included) ends after ``FETCH_TIMEOUT_S`` and at ``max_bytes``.  A named provider's credentials
go only to URLs under its ``url_prefix`` (a provider without one is refused; a redirect out of the prefix is
followed without them).  Every failure of the fetch itself answers the same 1009 text, ``FETCH_FAILED``: which
ports are open or what a host answered is nobody's business but the operator's, who finds it in the log (host
only, never the path, query or credentials).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from yarl import URL

from coreapp.storage.settings import SettingsStore
from shared.errors import ApiError, ErrorCode
from shared.netguard import AddressPolicy, TargetRefused, refusal_in, under_prefix
from shared.profiles import ROW_MEDIA_PROVIDERS

log = logging.getLogger("openprem.coreapp.media")

FETCH_TIMEOUT_S = 120.0
MAX_REDIRECTS = 3
FETCH_FAILED = "media could not be fetched"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 256 * 1024


class TooLarge(Exception):
    pass


class _Failed(Exception):
    """Why a fetch failed, for the log only."""


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if (resp.content_length or 0) > limit:
        raise TooLarge
    data = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        data += chunk
        if len(data) > limit:
            raise TooLarge
    return bytes(data)


def _invalid(details: str) -> ApiError:
    return ApiError(ErrorCode.INVALID_PARAMETER, details)


def _where(url: URL) -> str:
    return f"{url.scheme}://{url.host}:{url.port}" if url.host else "?"


class LinkFetcher:
    """Downloads links for outbound media through an ``AddressPolicy`` connector (its own session: the network's
    media host, which the operator configured, is reached by ``MediaService`` without this policy)."""

    def __init__(
        self, policy: AddressPolicy, settings: SettingsStore, max_bytes: int, *, connect_timeout_s: float = 10.0
    ) -> None:
        self._policy = policy
        self._settings = settings
        self._max_bytes = max_bytes
        self._connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S, sock_connect=self._connect_timeout_s)
            connector, jar = self._policy.connector(), aiohttp.DummyCookieJar()  # no cookies from one caller's host
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=jar)
        return self._session

    async def fetch(self, message_type: str, link: str, provider: Any) -> tuple[str, bytes]:
        """``(declared Content-Type, bytes)`` of ``link``; ``ApiError`` 1009 when it cannot or may not be had."""
        try:
            url = URL(link)
        except ValueError:
            raise _invalid(f"{message_type}.link must be an http(s) URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise _invalid(f"{message_type}.link must be an http(s) URL")
        prefix, auth = await self._provider_auth(message_type, provider)
        if prefix is not None and not under_prefix(url, prefix):
            raise _invalid(f"{message_type}.link is not under the url_prefix of its media provider")
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                return await self._follow(url, prefix, auth)
        except TooLarge:
            raise _invalid(f"media download error: the file is larger than {self._max_bytes} bytes") from None
        except (_Failed, TargetRefused, aiohttp.ClientError, OSError, ValueError) as exc:
            refused = refusal_in(exc)
            detail = f"target not allowed: {refused}" if refused is not None else _describe(exc)
            log.warning("media link to %s not fetched: %s", _where(url), detail)
            raise _invalid(f"{message_type}.link: {FETCH_FAILED}") from None

    async def _follow(self, url: URL, prefix: str | None, auth: dict[str, str]) -> tuple[str, bytes]:
        http = self._http()
        for _hop in range(MAX_REDIRECTS + 1):
            self._policy.check_url(url)
            headers = auth if prefix is not None and under_prefix(url, prefix) else {}
            async with http.get(url, headers=headers, allow_redirects=False) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    url = url.join(URL(location))
                    continue
                if resp.status != 200:
                    raise _Failed(f"HTTP {resp.status} from {_where(url)}")
                data = await read_limited(resp, self._max_bytes)
                if not data:
                    raise _Failed(f"an empty file from {_where(url)}")
                return resp.headers.get("Content-Type", ""), data
        raise _Failed(f"more than {MAX_REDIRECTS} redirects")

    async def _provider_auth(self, message_type: str, provider: Any) -> tuple[str | None, dict[str, str]]:
        """The named provider's ``url_prefix`` and ``Authorization`` header (bearer or basic); none named: none."""
        if provider is None:
            return None, {}
        name = provider.get("name") if isinstance(provider, dict) else None
        if not isinstance(name, str) or not name:
            raise _invalid(f"{message_type}.provider.name must be a string")
        stored = await self._settings.get(ROW_MEDIA_PROVIDERS)
        found = next((p for p in stored or [] if isinstance(p, dict) and p.get("name") == name), None)
        if found is None:
            raise _invalid(f"{message_type}.provider: no media provider named {name!r} is configured")
        prefix = found.get("url_prefix")
        if not isinstance(prefix, str) or not prefix:
            raise _invalid(
                f"{message_type}.provider: media provider {name!r} has no url_prefix, so its credentials are "
                "never sent; set one"
            )
        config = found.get("config") or {}
        bearer, basic = config.get("bearer"), config.get("basic")
        if isinstance(bearer, str) and bearer:
            return prefix, {"Authorization": f"Bearer {bearer}"}
        if isinstance(basic, dict) and isinstance(basic.get("username"), str):
            password = str(basic.get("password", ""))
            return prefix, {"Authorization": aiohttp.encode_basic_auth(basic["username"], password)}
        return prefix, {}


def _describe(exc: BaseException) -> str:
    """A log line's worth of ``exc``: the class, and the text of our own and of connection errors (which name the
    host and port, never the path or query)."""
    if isinstance(exc, _Failed):
        return str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}: {exc.os_error.strerror or type(exc.os_error).__name__}"
    if isinstance(exc, TimeoutError):
        return f"timed out ({FETCH_TIMEOUT_S:.0f} s for the whole fetch)"
    return type(exc).__name__
