"""Encrypted media: the format both ends of the wire agree on (DESIGN §7), after WhatsApp's media encryption.

A random 32-byte media key per file is HKDF-SHA256-expanded (no salt, ``info`` by media family) into 112 bytes:
IV (16) | AES-256 key (32) | HMAC-SHA256 key (32) | unused (32).  The blob stored on the media host is
``AES-256-CBC(PKCS7, plaintext) || HMAC-SHA256(mac_key, iv || ciphertext)[:10]``.  The sender puts the media key,
the plaintext SHA-256 and the blob SHA-256 in the (end-to-end encrypted) message; the receiver checks the blob
hash, the MAC (constant time) and the plaintext hash, so neither the media host nor the network can alter a file.

The functions are CPU-bound: callers with big files run them in ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MEDIA_KEY_BYTES = 32
MAC_BYTES = 10
_EXPANDED_BYTES = 112

_INFO = {
    "image": b"OpenPrem Image Keys",
    "sticker": b"OpenPrem Image Keys",
    "video": b"OpenPrem Video Keys",
    "audio": b"OpenPrem Audio Keys",
    "voice": b"OpenPrem Audio Keys",
    "document": b"OpenPrem Document Keys",
}
MEDIA_MESSAGE_TYPES = frozenset(_INFO)
"""Message types whose content carries an encrypted file."""


class MediaError(Exception):
    """A blob that fails a hash or MAC check, or keys that are malformed: never a partial result."""


@dataclass(frozen=True, slots=True)
class MediaKeys:
    """What the message carries so the receiver can fetch and check the file."""

    media_key: bytes
    sha256: bytes  # of the plaintext
    enc_sha256: bytes  # of the uploaded blob (ciphertext + MAC)
    file_length: int  # plaintext bytes

    def to_content(self) -> dict[str, str | int]:
        """The fields of the content media object: media key base64, hashes hex."""
        return {
            "media_key": base64.b64encode(self.media_key).decode(),
            "sha256": self.sha256.hex(),
            "enc_sha256": self.enc_sha256.hex(),
            "file_length": self.file_length,
        }

    @classmethod
    def from_content(cls, obj: dict[str, object]) -> MediaKeys:
        """Parse ``to_content``'s fields; ``MediaError`` when any is missing or malformed."""
        try:
            key = base64.b64decode(str(obj["media_key"]), validate=True)
            sha = bytes.fromhex(str(obj["sha256"]))
            enc = bytes.fromhex(str(obj["enc_sha256"]))
            length = obj.get("file_length", 0)
        except (KeyError, ValueError, binascii.Error):
            raise MediaError("media object lacks a valid media_key, sha256 or enc_sha256") from None
        if len(key) != MEDIA_KEY_BYTES or len(sha) != 32 or len(enc) != 32 or not isinstance(length, int):
            raise MediaError("media object has keys or hashes of the wrong size")
        return cls(media_key=key, sha256=sha, enc_sha256=enc, file_length=length)


def _expand(media_key: bytes, media_type: str) -> tuple[bytes, bytes, bytes]:
    info = _INFO.get(media_type)
    if info is None:
        raise MediaError(f"not a media message type: {media_type!r}")
    if len(media_key) != MEDIA_KEY_BYTES:
        raise MediaError("media key must be 32 bytes")
    okm = HKDF(algorithm=hashes.SHA256(), length=_EXPANDED_BYTES, salt=None, info=info).derive(media_key)
    return okm[:16], okm[16:48], okm[48:80]


def encrypt_media(data: bytes, media_type: str, media_key: bytes | None = None) -> tuple[bytes, MediaKeys]:
    """``(blob to upload, keys for the message)``; a fresh random media key unless one is given (tests)."""
    key = media_key if media_key is not None else os.urandom(MEDIA_KEY_BYTES)
    iv, cipher_key, mac_key = _expand(key, media_type)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(mac_key, iv + ciphertext, hashlib.sha256).digest()[:MAC_BYTES]
    blob = ciphertext + mac
    keys = MediaKeys(
        media_key=key,
        sha256=hashlib.sha256(data).digest(),
        enc_sha256=hashlib.sha256(blob).digest(),
        file_length=len(data),
    )
    return blob, keys


def decrypt_media(
    blob: bytes, media_key: bytes, media_type: str, expected_sha256: bytes, expected_enc_sha256: bytes
) -> bytes:
    """The plaintext, after checking the blob hash, the MAC and the plaintext hash (``MediaError`` otherwise)."""
    if not hmac.compare_digest(hashlib.sha256(blob).digest(), expected_enc_sha256):
        raise MediaError("encrypted file hash mismatch")
    iv, cipher_key, mac_key = _expand(media_key, media_type)
    ciphertext, mac = blob[:-MAC_BYTES], blob[-MAC_BYTES:]
    if len(blob) <= MAC_BYTES or len(ciphertext) % 16:
        raise MediaError("encrypted file has an invalid length")
    expected_mac = hmac.new(mac_key, iv + ciphertext, hashlib.sha256).digest()[:MAC_BYTES]
    if not hmac.compare_digest(mac, expected_mac):
        raise MediaError("encrypted file MAC mismatch")
    decryptor = Cipher(algorithms.AES(cipher_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        data = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise MediaError("encrypted file has invalid padding") from None
    if not hmac.compare_digest(hashlib.sha256(data).digest(), expected_sha256):
        raise MediaError("file hash mismatch")
    return data
