"""``/v1/certificates/external``: replace the HTTPS certificate of the running server, without a restart.

The listening socket keeps the ``SSLContext`` it was started with, so that context gets an SNI callback which
hands every new handshake the newest context.  (Calling ``load_cert_chain`` again on the same context is not
enough: OpenSSL keeps one certificate per key type, so an RSA upload next to the self-signed EC certificate
would leave both loaded and clients offered either.)  The uploaded pair is written under ``<data_dir>/web/``
and used again at the next start (``webapp.tls.ensure_certificate``).  Other webapps sharing the data
volume pick it up when they restart.  The private key is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared.errors import ApiError, ErrorCode
from shared.private_files import make_private_dirs
from webapp.tls import CERT_FILE, EXTERNAL_CERT_FILE, EXTERNAL_KEY_FILE, locked, server_context, write_atomic

log = logging.getLogger("openprem.webapp.certs")

_PRIVATE_KEY = re.compile(rb"-----BEGIN ((?:[A-Z]+ )?PRIVATE KEY)-----\r?\n.+?\r?\n-----END \1-----", re.DOTALL)


def parse_bundle(pem: bytes) -> tuple[bytes, bytes]:
    """``(chain PEM, key PEM)`` from a body holding the certificate chain and its private key; 1008/1009.

    The first certificate must be the server's own and match the key (an unencrypted PEM key).
    """
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "body holds no PEM certificate") from None
    matches = list(_PRIVATE_KEY.finditer(pem))
    if not matches:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "body holds no PEM private key (send the chain and the key)")
    match = matches[0]
    if len(matches) > 1:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "body holds more than one private key")
    try:
        key = serialization.load_pem_private_key(match.group(0), password=None)
    except (ValueError, TypeError):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "private key does not parse (encrypted keys are refused)") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != certs[0].public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "the private key does not match the first certificate")
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, key_pem


class ServerTls:
    """The HTTPS server's certificate state: which pair is served, and swapping it live."""

    def __init__(self, base: ssl.SSLContext, directory: Path, cert: Path, *, configured: bool) -> None:
        self._base = base
        self._current = base
        self._directory = directory
        self._cert = cert
        self._configured = configured
        base.sni_callback = self._select

    def _select(self, sslobj: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if self._current is not self._base:
            sslobj.context = self._current

    async def install(self, body: bytes) -> None:
        """Validate, store and serve an uploaded chain + key."""
        if self._configured:
            raise ApiError(ErrorCode.ACCESS_DENIED, "the certificate is set by WA_WEB_CERT_FILE/WA_WEB_KEY_FILE")
        chain, key = parse_bundle(body)
        context = await asyncio.to_thread(self._store_and_load, chain, key)
        self._current = context
        self._cert = self._directory / EXTERNAL_CERT_FILE
        log.info("external HTTPS certificate installed; new connections use it")

    def _store_and_load(self, chain: bytes, key: bytes) -> ssl.SSLContext:
        make_private_dirs(self._directory)
        cert_path, key_path = self._directory / EXTERNAL_CERT_FILE, self._directory / EXTERNAL_KEY_FILE
        staged_cert, staged_key = cert_path.with_suffix(".new.crt"), key_path.with_suffix(".new.key")
        with locked(self._directory):
            write_atomic(staged_key, key, 0o600)
            write_atomic(staged_cert, chain, 0o644)
            try:
                context = server_context(staged_cert, staged_key)
            except ssl.SSLError:
                staged_cert.unlink(missing_ok=True)
                staged_key.unlink(missing_ok=True)
                raise ApiError(ErrorCode.INVALID_PARAMETER, "the certificate and key do not load") from None
            staged_key.replace(key_path)
            staged_cert.replace(cert_path)
        return context

    def self_signed_pem(self) -> str | None:
        """The self-signed certificate (its own CA) while it is the one served, else ``None``."""
        if self._configured or self._cert.name != CERT_FILE:
            return None
        return self._cert.read_text()


SERVER_TLS_KEY = web.AppKey("openprem.server_tls", ServerTls)
