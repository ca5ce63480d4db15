"""Small but well-formed media files for tests: the headers the type checks look at, then filler bytes."""

from __future__ import annotations

import os
import struct
import zlib


def png(extra: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
    if extra:
        body += chunk(b"tEXt", b"x\x00" + os.urandom(extra))
    return body + chunk(b"IEND", b"")


def jpeg(extra: int = 64) -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(extra) + b"\xff\xd9"


def webp() -> bytes:
    payload = b"VP8 " + struct.pack("<I", 10) + os.urandom(10)
    return b"RIFF" + struct.pack("<I", 4 + len(payload)) + b"WEBP" + payload


def pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def ogg_opus() -> bytes:
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48000, 0, 0)
    page = b"OggS" + bytes([0, 2]) + bytes(8) + struct.pack("<I", 1) + struct.pack("<I", 0) + bytes(4)
    return page + bytes([1, len(head)]) + head + os.urandom(64)


def ogg_vorbis() -> bytes:
    head = b"\x01vorbis" + os.urandom(22)
    page = b"OggS" + bytes([0, 2]) + bytes(8) + struct.pack("<I", 1) + struct.pack("<I", 0) + bytes(4)
    return page + bytes([1, len(head)]) + head


def mp4(brand: bytes = b"isom") -> bytes:
    ftyp = b"ftyp" + brand + struct.pack(">I", 512) + brand + b"mp41"
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + struct.pack(">I", 8) + b"mdat" + os.urandom(128)


def text() -> bytes:
    return "Grüße aus OpenPrem\nzweite Zeile\n".encode()
