"""``/v1/settings/backup`` and ``/v1/settings/restore``: the install's number, keys and settings in one blob.

The blob is ``base64(MAGIC | version | salt | nonce | AES-256-GCM(zlib(JSON)))`` with the key derived from the
password by scrypt (memory-hard, DESIGN §7; n=2**15, r=8, p=1: ~32 MiB, ~0.1 s) and the header bound in as
associated data.  A wrong password and a damaged blob are indistinguishable by design: both are 1009.

Restore on a fresh install brings back the registration, identity, sessions and settings, then starts the chat
connection as a verify does: the network sees the same identity, so phones keep their sessions.  The chat
connection is stopped for the write, so nothing ratchets the old state while the new one lands.  Only one
install may run a number at a time (the network drops the older connection).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coreapp.services.keys import KeyService
from coreapp.storage.backup import BackupStore, Snapshot, account_from_dict, account_to_dict
from coreapp.storage.settings import SettingsStore
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId
from shared.wire.e2e import Identity

log = logging.getLogger("openprem.coreapp.backup")

MAGIC = b"OPBK"
VERSION = 1
SALT_BYTES = 16
NONCE_BYTES = 12
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
MAX_PASSWORD_CHARS = 1024
MAX_BLOB_CHARS = 64 * 1024 * 1024
_HEADER = len(MAGIC) + 1 + SALT_BYTES + NONCE_BYTES

BAD_BLOB = "wrong password, or data is not an OpenPrem backup"


def check_password(password: object) -> str:
    if not isinstance(password, str) or not password:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "password is required")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"password is at most {MAX_PASSWORD_CHARS} characters")
    return password


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=SCRYPT_MAXMEM, dklen=32
    )


def seal(password: str, document: dict[str, Any]) -> str:
    """Encrypt ``document`` (CPU and memory heavy: call in a thread)."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    header = MAGIC + bytes([VERSION]) + salt + nonce
    ciphertext = AESGCM(_derive(password, salt)).encrypt(nonce, zlib.compress(orjson.dumps(document)), header)
    return base64.b64encode(header + ciphertext).decode("ascii")


def unseal(password: str, data: str) -> dict[str, Any]:
    """Decrypt a blob from ``seal`` (call in a thread); 1009 for anything that is not one sealed with ``password``."""
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "data is not base64") from None
    if len(raw) <= _HEADER or not raw.startswith(MAGIC):
        raise ApiError(ErrorCode.INVALID_PARAMETER, BAD_BLOB)
    if raw[len(MAGIC)] != VERSION:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"backup format version {raw[len(MAGIC)]} is not supported")
    header, ciphertext = raw[:_HEADER], raw[_HEADER:]
    salt = header[len(MAGIC) + 1 : len(MAGIC) + 1 + SALT_BYTES]
    nonce = header[-NONCE_BYTES:]
    try:
        plain = AESGCM(_derive(password, salt)).decrypt(nonce, ciphertext, header)
        document = orjson.loads(zlib.decompress(plain))
    except (InvalidTag, zlib.error, orjson.JSONDecodeError):
        raise ApiError(ErrorCode.INVALID_PARAMETER, BAD_BLOB) from None
    if not isinstance(document, dict):
        raise ApiError(ErrorCode.INVALID_PARAMETER, BAD_BLOB)
    return document


def to_document(snapshot: Snapshot) -> dict[str, Any]:
    registered = snapshot.account is not None and snapshot.account.registered and snapshot.identity_json
    return {
        "version": VERSION,
        "registration": account_to_dict(snapshot.account) if registered and snapshot.account else None,
        "identity": snapshot.identity_json if registered else None,
        "sessions": [list(s) for s in snapshot.sessions] if registered else [],
        "settings": snapshot.settings,
    }


def from_document(document: dict[str, Any]) -> Snapshot:
    """The snapshot a document describes; 1009 when it is not well formed."""
    try:
        registration = document.get("registration")
        account = account_from_dict(registration) if registration is not None else None
        identity_json = document.get("identity")
        sessions = [(str(p), int(d), str(s)) for p, d, s in document.get("sessions") or []]
        settings = document.get("settings") or {}
        if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
            raise TypeError("settings")
        if account is not None and not isinstance(identity_json, str):
            raise TypeError("identity")
    except (KeyError, TypeError, ValueError):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "backup content is malformed") from None
    return Snapshot(account, identity_json if account is not None else None, sessions, settings)


class BackupService:
    def __init__(
        self,
        store: BackupStore,
        settings: SettingsStore,
        keys: KeyService,
        pause_chat: Callable[[], Awaitable[None]],
        start_chat: Callable[[WaId], Awaitable[None]],
        restored: Callable[[], None] = lambda: None,
    ) -> None:
        self._restored = restored  # drops what was cached from the rows a restore rewrote
        self._store = store
        self._settings = settings
        self._keys = keys
        self._pause_chat = pause_chat
        self._start_chat = start_chat
        self._lock = asyncio.Lock()

    async def backup(self, password: object) -> str:
        """The encrypted blob of this install (base64 text)."""
        checked = check_password(password)
        async with self._keys.identity_lock:  # no pre-key top-up half-way through the snapshot
            snapshot = await self._store.snapshot()
        blob = await asyncio.to_thread(seal, checked, to_document(snapshot))
        log.info("backup created (%d sessions, %d settings rows)", len(snapshot.sessions), len(snapshot.settings))
        return blob

    async def restore(self, password: object, data: object) -> None:
        """Put a backup in place of this install's number, keys and settings, then connect with them."""
        checked = check_password(password)
        if not isinstance(data, str) or not data:
            raise ApiError(ErrorCode.MISSING_PARAMETER, "data is required")
        if len(data) > MAX_BLOB_CHARS:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "data is too large to be a backup")
        snapshot = from_document(await asyncio.to_thread(unseal, checked, data))
        identity: Identity | None = None
        if snapshot.identity_json is not None:
            try:
                identity = await asyncio.to_thread(Identity.from_json, snapshot.identity_json)
            except Exception:
                raise ApiError(ErrorCode.INVALID_PARAMETER, "backup content is malformed") from None
        async with self._lock:
            previous = await self._store.account()
            if identity is not None:
                await self._pause_chat()
            try:
                async with self._keys.identity_lock:
                    await self._store.restore(snapshot)
                    if identity is not None:
                        self._keys.install(identity)
            except BaseException:
                # The transaction rolled back: the old number and keys are still in place, so reconnect with them.
                if identity is not None and previous is not None and previous.registered and previous.wa_id:
                    await self._start_chat(previous.wa_id)
                raise
            self._restored()
            await self._settings.reload()
        account = snapshot.account
        if account is not None and account.wa_id is not None:
            log.info("restored %s from a backup (%d sessions); connecting", account.wa_id, len(snapshot.sessions))
            await self._start_chat(account.wa_id)
        else:
            log.info("restored settings from a backup that holds no registration")
