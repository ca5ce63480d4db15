"""``/v1/settings/backup`` and ``/v1/settings/restore``: the install's number, keys and settings in one blob.

The blob is ``base64(MAGIC | version | log2(N) | salt | nonce | AES-256-GCM(zlib(JSON)))`` with the key derived
from the password by scrypt (memory-hard, DESIGN §7; N=2**17, r=8, p=1: 128 MiB, ~0.5 s) and the header bound in
as associated data.  The cost travels in the header, so it can rise again without orphaning older backups;
version 1 blobs (no cost byte, N=2**15) still restore.  A new backup's password has at least
``BACKUP_PASSWORD_MIN_CHARS`` characters; a restore takes any, for the backups made before that rule.  A wrong
password and a damaged blob are indistinguishable by design: both are 1009.

The keys inside are plaintext under the blob's own envelope (never the install's key-store key, which stays with
the install): a restore seals them again with the restoring install's key.

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
from shared.bus.contract.settings import BACKUP_PASSWORD_MIN_CHARS
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId
from shared.wire.e2e import Identity

log = logging.getLogger("openprem.coreapp.backup")

MAGIC = b"OPBK"
VERSION = 2
"""Envelope format: 2 carries log2(N) after the version byte; 1 (N=2**15 implied) is still read."""
DOCUMENT_VERSION = 1
SALT_BYTES = 16
NONCE_BYTES = 12
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 17, 8, 1
SCRYPT_N = 2**SCRYPT_LOG2_N
_V1_LOG2_N = 15
_LOG2_N_ACCEPTED = range(_V1_LOG2_N, 19)
"""Costs a restore accepts: from the version-1 default up to 2**18 (256 MiB), never what a crafted blob asks."""
MAX_PASSWORD_CHARS = 1024
MAX_BLOB_CHARS = 64 * 1024 * 1024

BAD_BLOB = "wrong password, or data is not an OpenPrem backup"


def check_password(password: object, *, new_backup: bool = False) -> str:
    if not isinstance(password, str) or not password:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "password is required")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"password is at most {MAX_PASSWORD_CHARS} characters")
    if new_backup and len(password) < BACKUP_PASSWORD_MIN_CHARS:
        raise ApiError(
            ErrorCode.INVALID_PARAMETER, f"password must have at least {BACKUP_PASSWORD_MIN_CHARS} characters"
        )
    return password


def _derive(password: str, salt: bytes, log2_n: int) -> bytes:
    n = 2**log2_n
    maxmem = 2 * 128 * SCRYPT_R * n  # twice scrypt's 128·r·N bytes: room for its other buffers
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=maxmem, dklen=32)


def seal(password: str, document: dict[str, Any]) -> str:
    """Encrypt ``document`` (CPU and memory heavy: call in a thread)."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    header = MAGIC + bytes([VERSION, SCRYPT_LOG2_N]) + salt + nonce
    key = _derive(password, salt, SCRYPT_LOG2_N)
    ciphertext = AESGCM(key).encrypt(nonce, zlib.compress(orjson.dumps(document)), header)
    return base64.b64encode(header + ciphertext).decode("ascii")


def _split(raw: bytes) -> tuple[bytes, int, bytes, bytes, bytes]:
    """``(header, log2_n, salt, nonce, ciphertext)`` of a version 1 or 2 blob; 1009 otherwise."""
    if len(raw) <= len(MAGIC) or not raw.startswith(MAGIC):
        raise ApiError(ErrorCode.INVALID_PARAMETER, BAD_BLOB)
    version = raw[len(MAGIC)]
    if version == 1:
        at, log2_n = len(MAGIC) + 1, _V1_LOG2_N
    elif version == 2 and len(raw) > len(MAGIC) + 1:
        at, log2_n = len(MAGIC) + 2, raw[len(MAGIC) + 1]
        if log2_n not in _LOG2_N_ACCEPTED:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"backup key-derivation cost 2**{log2_n} is not supported")
    else:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"backup format version {version} is not supported")
    end = at + SALT_BYTES + NONCE_BYTES
    if len(raw) <= end:
        raise ApiError(ErrorCode.INVALID_PARAMETER, BAD_BLOB)
    return raw[:end], log2_n, raw[at : at + SALT_BYTES], raw[at + SALT_BYTES : end], raw[end:]


def unseal(password: str, data: str) -> dict[str, Any]:
    """Decrypt a blob from ``seal`` (call in a thread); 1009 for anything that is not one sealed with ``password``."""
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "data is not base64") from None
    header, log2_n, salt, nonce, ciphertext = _split(raw)
    try:
        plain = AESGCM(_derive(password, salt, log2_n)).decrypt(nonce, ciphertext, header)
        document = orjson.loads(zlib.decompress(plain))
    except (InvalidTag, zlib.error, orjson.JSONDecodeError):
        raise ApiError(ErrorCode.INVALID_PARAMETER, BAD_BLOB) from None
    if not isinstance(document, dict):
        raise ApiError(ErrorCode.INVALID_PARAMETER, BAD_BLOB)
    return document


def to_document(snapshot: Snapshot) -> dict[str, Any]:
    registered = snapshot.account is not None and snapshot.account.registered and snapshot.identity_json
    return {
        "version": DOCUMENT_VERSION,
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
        checked = check_password(password, new_backup=True)
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
