"""The uploaded webhook CA (``/v1/certificates/webhooks/ca``) and the TLS context the dispatcher verifies with.

When a CA is set, the webhook server must chain to it and to nothing else: the upload exists for private CAs,
and trusting the system roots as well would let any public certificate for the host through (On-Prem did
the same).  Without one, the system default trust store applies.  The context is cached per PEM; this process
sees its own uploads at once and another process's within ``REFRESH_S``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from coreapp.storage.settings import SettingsStore
from shared.errors import ApiError, ErrorCode
from shared.profiles import ROW_WEBHOOKS_CA

log = logging.getLogger("openprem.coreapp.webhooks.ca")

REFRESH_S = 30.0
MAX_PEM_CHARS = 256 * 1024


def parse_ca(pem: object) -> str:
    """The PEM normalised to its certificates only; 1009 when it holds none or does not parse."""
    if not isinstance(pem, str) or not pem.strip():
        raise ApiError(ErrorCode.MISSING_PARAMETER, "a PEM certificate is required")
    if len(pem) > MAX_PEM_CHARS:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "certificate is too large")
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "not a PEM certificate") from None
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def client_context(pem: str) -> ssl.SSLContext:
    """Verify the server against ``pem`` only (``cadata`` stops ``create_default_context`` loading the roots)."""
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=pem)


class WebhookCa:
    def __init__(self, settings: SettingsStore) -> None:
        self._settings = settings
        self._pem: str | None = None
        self._context: ssl.SSLContext | None = None
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get_pem(self) -> str | None:
        stored = await self._settings.get(ROW_WEBHOOKS_CA)
        pem = stored.get("pem") if isinstance(stored, dict) else None
        return pem if isinstance(pem, str) else None

    async def set(self, pem: object) -> None:
        normalised = parse_ca(pem)
        context = await asyncio.to_thread(client_context, normalised)
        await self._settings.put(ROW_WEBHOOKS_CA, {"pem": normalised})
        self._install(normalised, context)
        log.info("webhook CA set: webhook servers are verified against it only")

    async def clear(self) -> bool:
        """Forget the CA; whether there was one."""
        had = await self.get_pem() is not None
        await self._settings.put(ROW_WEBHOOKS_CA, None)
        self._install(None, None)
        if had:
            log.info("webhook CA removed: webhook servers are verified against the system roots")
        return had

    async def context(self) -> ssl.SSLContext | None:
        """The dispatcher's ``ssl_context_provider``: ``None`` means the default trust store."""
        if time.monotonic() - self._loaded_at < REFRESH_S:
            return self._context
        async with self._lock:
            if time.monotonic() - self._loaded_at >= REFRESH_S:
                pem = await self.get_pem()
                if pem != self._pem:
                    try:
                        context = None if pem is None else await asyncio.to_thread(client_context, pem)
                    except ssl.SSLError:
                        log.error("stored webhook CA does not load; using the system roots")
                        context = None
                    self._install(pem, context)
                self._loaded_at = time.monotonic()
        return self._context

    def _install(self, pem: str | None, context: ssl.SSLContext | None) -> None:
        self._pem, self._context, self._loaded_at = pem, context, time.monotonic()
