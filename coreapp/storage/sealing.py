"""Key material at rest: the identity and the Signal sessions are sealed with a key kept outside the database.

A sealed value is text (it stays in the same ``LongText`` columns): ``opseal:`` + base64 of
``version (1) | key id (8) | nonce (12) | AES-256-GCM ciphertext + tag``.  The nonce is random per value.  The
associated data is the header plus the row's *binding* (table and primary key), so a value copied into another
row, or under another key id, does not open.  The key id (HMAC-SHA256 of a fixed label under the key, 8 bytes)
names the key without revealing it, so start-up can tell "no key" and "another key" apart from damage.

The key comes from ``WA_KEYSTORE_KEY`` or a key file (base64 text, 0600, in a 0700 directory), made on the first
start of an install with nothing sealed yet.  Only ``coreapp.storage.keys`` seals and opens; never log a key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import KEYSTORE_KEY_BYTES, KeystoreSettings
from shared.private_files import PRIVATE_FILE_MODE, exposed, make_private_dirs

log = logging.getLogger("openprem.coreapp.keys")

PREFIX = "opseal:"
VERSION = 1
KEY_ID_BYTES = 8
NONCE_BYTES = 12
_HEADER = 1 + KEY_ID_BYTES + NONCE_BYTES
_TAG_BYTES = 16
_KEY_ID_LABEL = b"openprem keystore key id v1"
_AAD_LABEL = b"openprem keystore v1\x00"


class KeystoreError(Exception):
    """The key store's key is missing, malformed or not the one the rows were sealed with, or a sealed value does
    not open (damaged, or moved to another row).  The message names no secret: it is the start-up CRITICAL line."""


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def key_id_of(value: str) -> bytes | None:
    """The key id a sealed value names (``None`` for plaintext or garbage)."""
    raw = _decode(value)
    return raw[1 : 1 + KEY_ID_BYTES] if raw is not None and len(raw) > _HEADER else None


def binding(table: str, *key: object) -> bytes:
    """The associated data tying a value to its row: the table and its primary key, unambiguously joined."""
    return _AAD_LABEL + "\x00".join([table, *(str(part) for part in key)]).encode()


class Sealer:
    """AES-256-GCM under the key-store key.  Holds the key; its ``repr`` shows only the key id."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEYSTORE_KEY_BYTES:
            raise KeystoreError(f"the key-store key must be {KEYSTORE_KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self.key_id = hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).digest()[:KEY_ID_BYTES]

    def __repr__(self) -> str:
        return f"Sealer(key_id={self.key_id.hex()})"

    def seal(self, plaintext: str, row: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        header = bytes([VERSION]) + self.key_id + nonce
        ciphertext = self._aead.encrypt(nonce, plaintext.encode("utf-8"), header + row)
        return PREFIX + base64.b64encode(header + ciphertext).decode("ascii")

    def open(self, value: str, row: bytes) -> str:
        """The plaintext of ``value`` sealed for ``row``; ``KeystoreError`` for anything else (plaintext included:
        once an install is sealed, a plaintext row is someone else's write)."""
        raw = _decode(value)
        if raw is None or len(raw) < _HEADER + _TAG_BYTES:
            raise KeystoreError("a key-store row is not sealed (or not in a known format)")
        if raw[0] != VERSION:
            raise KeystoreError(f"a key-store row is sealed in format {raw[0]}, which this version cannot read")
        if raw[1 : 1 + KEY_ID_BYTES] != self.key_id:
            raise KeystoreError(
                f"a key-store row is sealed with key {raw[1 : 1 + KEY_ID_BYTES].hex()}, "
                f"not with this install's key {self.key_id.hex()}"
            )
        try:
            return self._aead.decrypt(raw[1 + KEY_ID_BYTES : _HEADER], raw[_HEADER:], raw[:_HEADER] + row).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise KeystoreError("a key-store row does not open with this install's key: damaged or moved") from None


def _decode(value: str) -> bytes | None:
    if not is_sealed(value):
        return None
    try:
        return base64.b64decode(value[len(PREFIX) :].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def load_key(settings: KeystoreSettings, data_dir: Path, *, may_create: bool) -> bytes:
    """The key-store key: ``WA_KEYSTORE_KEY``, else the key file, made (0600) when missing and ``may_create``
    (nothing sealed yet).  Blocking: call in a thread."""
    if settings.key is not None:
        return settings.key
    path = settings.key_file_in(data_dir)
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        if not may_create:
            raise KeystoreError(
                f"the database holds sealed keys but the key-store key file {path} is missing: restore it "
                "(or set WA_KEYSTORE_KEY); without it the identity cannot be read and the number would have to "
                "be registered again"
            ) from None
    return _create_key_file(path)


def _read_key_file(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEYSTORE_KEY_BYTES:
        raise KeystoreError(f"the key-store key file {path} does not hold the base64 of {KEYSTORE_KEY_BYTES} bytes")
    if exposed(path):
        log.warning("the key-store key file %s is readable by other users: chmod 600 it", path)
    return key


def _create_key_file(path: Path) -> bytes:
    make_private_dirs(path.parent)
    key = os.urandom(KEYSTORE_KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(base64.b64encode(key).decode("ascii") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # never replaces a key another process made meanwhile
    except FileExistsError:
        return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)  # the key is on disk before anything is sealed with it
    log.info("created the key-store key file %s: back it up with the database", path)
    return key


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
