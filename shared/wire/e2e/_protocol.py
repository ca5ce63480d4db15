"""The Signal configuration both ends share: changing any constant or class here breaks the wire.

Modelled on twomemo (OMEMO 2): X3DH with Ed25519 identity keys and SHA-256, a Double Ratchet over
Curve25519 with an HKDF root chain and a separate-HMAC message chain, and our own AES-256-CBC + truncated
HMAC-SHA256 AEAD (the library's sample compares tags with ``!=``; ours uses ``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Final

import doubleratchet
import x3dh
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.padding import PKCS7
from doubleratchet.recommended import HashFunction as DRHashFunction  # not x3dh.HashFunction: distinct enums
from doubleratchet.recommended import diffie_hellman_ratchet_curve25519, kdf_hkdf, kdf_separate_hmacs

X3DH_INFO: Final = b"OpenPrem X3DH"
ROOT_CHAIN_INFO: Final = b"OpenPrem DR Root Chain"
MESSAGE_KEY_INFO: Final = b"OpenPrem DR Message Keys"
MESSAGE_CHAIN_CONSTANT: Final = b"\x02\x01"  # twomemo's value: one HMAC per byte -> (chain key, message key)
MAX_SKIPPED_KEYS: Final = 1000  # kept per session for out-of-order messages (bounds JSON size)
DOS_THRESHOLD: Final = 100  # most keys one message may make us derive (bounds CPU per message)
TAG_LENGTH: Final = 16
KEY_LENGTH: Final = 32
SIGNATURE_LENGTH: Final = 64
# Rotation is managed by callers later; x3dh rotates on load past this age, so make it effectively never.
SPK_ROTATION_PERIOD: Final = 100 * 365 * 24 * 3600
# Prefixed to everything ``Identity.sign`` signs, so a login signature can never double as a signed pre-key
# signature (x3dh signs the bare 32-byte pre-key) even if a malicious server picks the nonce.
SIGNATURE_DOMAIN: Final = b"OpenPrem signature v1\x00"

IDENTITY_KEY_FORMAT: Final = x3dh.IdentityKeyFormat.ED_25519
X3DH_HASH: Final = x3dh.HashFunction.SHA_256

_AD_LENGTH = struct.Struct(">H")
_COUNTERS = struct.Struct(">II")


class X3DHState(x3dh.State):
    """x3dh state with our public-key encoding; publishing is the caller's job (see ``Identity``)."""

    @staticmethod
    def _encode_public_key(key_format: x3dh.IdentityKeyFormat, pub: bytes) -> bytes:
        return pub  # raw 32 bytes, as twomemo; unique within a format

    def _publish_bundle(self, bundle: x3dh.Bundle) -> None:
        # Sync hook run inside create/rotation/passive agreement: deliberately a no-op. Callers publish
        # what Identity.signed_prekey()/one_time_prekeys()/top_up() return, after persisting the identity.
        pass


def new_x3dh_state() -> X3DHState:
    """A fresh state with one pre-key; refill is explicit (``Identity.top_up``).

    With threshold = target = 1 the library itself only adds a key if the pool ever hits zero.
    """
    return X3DHState.create(
        IDENTITY_KEY_FORMAT,
        X3DH_HASH,
        X3DH_INFO,
        signed_pre_key_rotation_period=SPK_ROTATION_PERIOD,
        pre_key_refill_threshold=1,
        pre_key_refill_target=1,
    )


def load_x3dh_state(model: x3dh.BaseStateModel) -> X3DHState:
    """Rebuild a state with the same options as ``new_x3dh_state`` (they are not serialised)."""
    return X3DHState.from_model(
        model,
        IDENTITY_KEY_FORMAT,
        X3DH_HASH,
        X3DH_INFO,
        signed_pre_key_rotation_period=SPK_ROTATION_PERIOD,
        pre_key_refill_threshold=1,
        pre_key_refill_target=1,
    )


class RootChainKDF(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> DRHashFunction:
        return DRHashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return ROOT_CHAIN_INFO


class MessageChainKDF(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> DRHashFunction:
        return DRHashFunction.SHA_256


def _split_message_key(key: bytes) -> tuple[bytes, bytes, bytes]:
    """80 bytes of HKDF output -> AES-256 key, HMAC key, CBC IV (each message key is used once)."""
    okm = HKDF(algorithm=hashes.SHA256(), length=80, salt=b"\x00" * 32, info=MESSAGE_KEY_INFO).derive(key)
    return okm[:32], okm[32:64], okm[64:]


def _tag(auth_key: bytes, associated_data: bytes, ciphertext: bytes) -> bytes:
    mac = hmac.new(auth_key, _AD_LENGTH.pack(len(associated_data)) + associated_data, hashlib.sha256)
    mac.update(ciphertext)
    return mac.digest()[:TAG_LENGTH]


class AEAD(doubleratchet.AEAD):
    """AES-256-CBC/PKCS#7 then HMAC-SHA256(len(ad) || ad || ciphertext) truncated to 16 bytes."""

    @staticmethod
    async def encrypt(plaintext: bytes, key: bytes, associated_data: bytes) -> bytes:
        enc_key, auth_key, iv = _split_message_key(key)
        padder = PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        return ciphertext + _tag(auth_key, associated_data, ciphertext)

    @staticmethod
    async def decrypt(ciphertext: bytes, key: bytes, associated_data: bytes) -> bytes:
        body, tag = ciphertext[:-TAG_LENGTH], ciphertext[-TAG_LENGTH:]
        if len(body) < 16 or len(body) % 16:
            raise doubleratchet.DecryptionFailedException("ciphertext has an impossible length")
        dec_key, auth_key, iv = _split_message_key(key)
        if not hmac.compare_digest(_tag(auth_key, associated_data, body), tag):
            raise doubleratchet.AuthenticationFailedException("authentication tag mismatch")
        decryptor = Cipher(algorithms.AES(dec_key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(body) + decryptor.finalize()
        try:
            unpadder = PKCS7(128).unpadder()
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError as exc:
            raise doubleratchet.DecryptionFailedException("bad padding") from exc


class DoubleRatchet(doubleratchet.DoubleRatchet):
    @staticmethod
    def _build_associated_data(associated_data: bytes, header: doubleratchet.Header) -> bytes:
        # X3DH AD (both identity keys) + the DR header, so the MAC covers ratchet key and counters.
        return (
            _AD_LENGTH.pack(len(associated_data))
            + associated_data
            + header.ratchet_pub
            + _COUNTERS.pack(header.previous_sending_chain_length, header.sending_chain_length)
        )


DR_CONFIG: Final = (
    diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet,
    RootChainKDF,
    MessageChainKDF,
    MESSAGE_CHAIN_CONSTANT,
    DOS_THRESHOLD,
    MAX_SKIPPED_KEYS,
    AEAD,
)
