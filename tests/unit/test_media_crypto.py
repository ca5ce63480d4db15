"""``shared.wire.media`` (encrypted media) and ``shared.media_types`` (magic-number checks)."""

from __future__ import annotations

import hashlib
import os

import pytest

from shared import media_types
from shared.wire.media import MAC_BYTES, MediaError, MediaKeys, decrypt_media, encrypt_media
from tests.support import media_samples as samples


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 100_000])
def test_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob, keys = encrypt_media(data, "image")
    assert len(blob) % 16 == MAC_BYTES and len(blob) > size
    assert keys.sha256 == hashlib.sha256(data).digest() and keys.enc_sha256 == hashlib.sha256(blob).digest()
    assert keys.file_length == size
    assert decrypt_media(blob, keys.media_key, "image", keys.sha256, keys.enc_sha256) == data


def test_fresh_key_per_file_and_content_encoding() -> None:
    _, first = encrypt_media(b"same", "document")
    _, second = encrypt_media(b"same", "document")
    assert first.media_key != second.media_key and first.enc_sha256 != second.enc_sha256
    assert MediaKeys.from_content(first.to_content()) == first
    content = first.to_content()
    assert content["sha256"] == hashlib.sha256(b"same").hexdigest()


def test_types_share_keys_by_family_only() -> None:
    key = os.urandom(32)
    blob, keys = encrypt_media(b"x" * 40, "image", media_key=key)
    assert decrypt_media(blob, key, "sticker", keys.sha256, keys.enc_sha256) == b"x" * 40
    with pytest.raises(MediaError, match="MAC"):
        decrypt_media(blob, key, "video", keys.sha256, keys.enc_sha256)
    with pytest.raises(MediaError):
        encrypt_media(b"x", "text")


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1 :]


def test_tampering_is_detected() -> None:
    data = os.urandom(1000)
    blob, keys = encrypt_media(data, "video")
    for index in (0, len(blob) // 2, len(blob) - 1):  # ciphertext and MAC
        tampered = _flip(blob, index)
        with pytest.raises(MediaError, match="encrypted file hash"):
            decrypt_media(tampered, keys.media_key, "video", keys.sha256, keys.enc_sha256)
        # A host that also rewrote the enc hash in transit is still caught by the MAC.
        with pytest.raises(MediaError, match="MAC"):
            decrypt_media(tampered, keys.media_key, "video", keys.sha256, hashlib.sha256(tampered).digest())
    with pytest.raises(MediaError, match="MAC"):
        decrypt_media(blob, os.urandom(32), "video", keys.sha256, keys.enc_sha256)
    with pytest.raises(MediaError, match="file hash mismatch"):
        decrypt_media(blob, keys.media_key, "video", hashlib.sha256(b"other").digest(), keys.enc_sha256)
    short = blob[:5]
    with pytest.raises(MediaError, match="length"):
        decrypt_media(short, keys.media_key, "video", keys.sha256, hashlib.sha256(short).digest())


def test_malformed_content_keys() -> None:
    _, keys = encrypt_media(b"abc", "audio")
    content = keys.to_content()
    for broken in ({**content, "media_key": "!!"}, {**content, "sha256": "zz"}, {"sha256": content["sha256"]}):
        with pytest.raises(MediaError):
            MediaKeys.from_content(dict(broken))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (samples.png(), "image/png"),
        (samples.jpeg(), "image/jpeg"),
        (samples.webp(), "image/webp"),
        (samples.pdf(), "application/pdf"),
        (samples.ogg_opus(), "audio/ogg; codecs=opus"),
        (samples.mp4(), "video/mp4"),
        (samples.mp4(b"3gp4"), "video/3gpp"),
        (samples.mp4(b"M4A "), "audio/mp4"),
        (b"#!AMR\n" + os.urandom(20), "audio/amr"),
        (b"ID3\x04" + os.urandom(20), "audio/mpeg"),
        (b"\xff\xf1\x50\x80" + os.urandom(20), "audio/aac"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(20), "application/msword"),
        (b"PK\x03\x04" + bytes(26) + b"word/document.xml", media_types._DOCX),
        (samples.text(), "text/plain"),
        (samples.ogg_vorbis(), None),
        (b"\x00\x01\x02", None),
    ],
)
def test_detect(data: bytes, expected: str | None) -> None:
    assert media_types.detect(data) == expected


def test_check_and_normalize() -> None:
    assert media_types.check("IMAGE/PNG", samples.png()) == "image/png"
    assert media_types.check('audio/ogg; codecs="opus"', samples.ogg_opus()) == "audio/ogg; codecs=opus"
    assert media_types.check("application/vnd.ms-excel", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") == (
        "application/vnd.ms-excel"
    )
    with pytest.raises(media_types.MediaTypeError) as info:
        media_types.check("image/png", samples.jpeg())
    assert not info.value.unsupported
    with pytest.raises(media_types.MediaTypeError) as info:
        media_types.normalize("image/gif")
    assert info.value.unsupported
    assert media_types.check("text/plain", "ä".encode() * 3000) == "text/plain"  # a character cut at the head's end
    assert media_types.allowed_for_message("image", "image/png")
    assert not media_types.allowed_for_message("image", "application/pdf")
    assert not media_types.allowed_for_message("sticker", "image/png")
    assert media_types.allowed_for_message("document", "image/png")
