"""Small but well-formed media files for tests: the headers the type checks look at, then filler bytes."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable


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


def aac() -> bytes:
    """ADTS frames: sync word, MPEG-4 AAC LC, 44.1 kHz, stereo."""
    frame = bytes([0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC]) + os.urandom(9)
    return frame * 4


def mp3() -> bytes:
    """An ID3v2 tag, then MPEG-1 Layer III frames."""
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    return tag + (b"\xff\xfb\x90\x64" + os.urandom(413)) * 2


def amr() -> bytes:
    return b"#!AMR\n" + (b"\x3c" + os.urandom(31)) * 4


def m4a() -> bytes:
    """MPEG-4 audio: an ``ftyp`` box with the ``M4A `` brand."""
    return mp4(b"M4A ")


def three_gp() -> bytes:
    return mp4(b"3gp4")


def ole_compound() -> bytes:
    """The OLE compound-file header of .doc, .xls and .ppt."""
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16) + b"\x3e\x00\x03\x00\xfe\xff" + os.urandom(482)


def ooxml_zip(name: bytes = b"word/document.xml") -> bytes:
    """A ZIP local file header, as .docx (``word/``), .xlsx (``xl/``) and .pptx (``ppt/``) start."""
    header = b"PK\x03\x04\x14\x00\x00\x00\x00\x00" + bytes(16) + struct.pack("<HH", len(name), 0)
    return header + name + os.urandom(64)


SAMPLES_BY_TYPE: dict[str, Callable[[], bytes]] = {
    "image/jpeg": lambda: jpeg(),
    "image/png": lambda: png(),
    "image/webp": webp,
    "audio/aac": aac,
    "audio/mp4": m4a,
    "audio/amr": amr,
    "audio/mpeg": mp3,
    "audio/ogg; codecs=opus": ogg_opus,
    "video/mp4": lambda: mp4(),
    "video/3gpp": three_gp,
    "application/pdf": pdf,
    "application/msword": ole_compound,
    "application/vnd.ms-excel": ole_compound,
    "application/vnd.ms-powerpoint": ole_compound,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ooxml_zip,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": lambda: ooxml_zip(b"xl/workbook.xml"),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": lambda: ooxml_zip(
        b"ppt/presentation.xml"
    ),
    "text/plain": text,
}
"""One sample per media type WhatsApp accepts (``shared.media_types.ALLOWED_TYPES``)."""
