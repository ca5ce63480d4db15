"""The media types WhatsApp accepts and magic-number checks for each (reference §2.7, dependencies §5.6).

Pure Python on the first bytes of a file (``HEAD_BYTES``): a declared ``Content-Type`` is accepted only when
it is on the allow-list *and* the bytes look like it, so a renamed file cannot reach a phone under a false
type.  ``filetype`` would miss 3GP and plain text and still need the Opus check, so the dozen signatures live
here.  Used by webapp (uploads) and coreapp (files fetched by ``link``).
"""

from __future__ import annotations

from collections.abc import Callable

HEAD_BYTES = 4096
"""How much of a file the checks look at."""

OGG_OPUS = "audio/ogg; codecs=opus"
_CFB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE compound file: .doc .xls .ppt
_ZIP = b"PK\x03\x04"  # OOXML containers
_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


class MediaTypeError(Exception):
    """A declared type that is not allowed (``unsupported``) or bytes that are not of that type."""

    def __init__(self, message: str, *, unsupported: bool) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def _ftyp(head: bytes) -> bool:
    return head[4:8] == b"ftyp"


def _is_3gp(head: bytes) -> bool:
    return _ftyp(head) and head[8:11] in (b"3gp", b"3g2")


def _is_aac(head: bytes) -> bool:
    adts = len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0
    return adts or head.startswith(b"ADIF")


def _is_mpeg_audio(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    # MPEG audio frame sync: 11 bits set, then a version and a non-reserved layer (0b00 is AAC's ADTS).
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] >> 1) & 0x3 != 0


def _is_ogg_opus(head: bytes) -> bool:
    """WhatsApp takes Ogg only with Opus: the first page's packet must be ``OpusHead``."""
    if not head.startswith(b"OggS") or len(head) < 27:
        return False
    start = 27 + head[26]  # page header, then the segment table
    return head[start : start + 8] == b"OpusHead"


def _is_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only a character cut at the end of the head is forgiven
            return False
        text = head[: exc.start].decode("utf-8")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\x1b")
    return controls <= len(text) // 100


_CHECKS: dict[str, Callable[[bytes], bool]] = {
    "image/jpeg": lambda h: h.startswith(b"\xff\xd8\xff"),
    "image/png": lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/webp": lambda h: h.startswith(b"RIFF") and h[8:12] == b"WEBP",
    "audio/aac": _is_aac,
    "audio/mp4": _ftyp,
    "audio/amr": lambda h: h.startswith(b"#!AMR"),
    "audio/mpeg": _is_mpeg_audio,
    OGG_OPUS: _is_ogg_opus,
    "video/mp4": _ftyp,
    "video/3gpp": _is_3gp,
    "application/pdf": lambda h: h.startswith(b"%PDF-"),
    "application/msword": lambda h: h.startswith(_CFB),
    "application/vnd.ms-excel": lambda h: h.startswith(_CFB),
    "application/vnd.ms-powerpoint": lambda h: h.startswith(_CFB),
    _DOCX: lambda h: h.startswith(_ZIP),
    _XLSX: lambda h: h.startswith(_ZIP),
    _PPTX: lambda h: h.startswith(_ZIP),
    "text/plain": _is_text,
}
ALLOWED_TYPES = frozenset(_CHECKS)

_MESSAGE_TYPE_PREFIX = {
    "image": ("image/jpeg", "image/png"),
    "sticker": ("image/webp",),
    "audio": ("audio/",),
    "voice": ("audio/",),
    "video": ("video/",),
}
"""Which media types each message type may carry; ``document`` takes any allowed type."""


def normalize(content_type: str) -> str:
    """The canonical allowed type for a ``Content-Type`` value, or ``MediaTypeError(unsupported=True)``.

    Parameters are dropped except for Ogg, which must be (or default to) Opus.
    """
    base, _, params = content_type.partition(";")
    base = base.strip().lower()
    if base == "audio/ogg":
        codecs = {
            key.strip().lower(): value.strip().strip('"').lower()
            for key, _, value in (part.partition("=") for part in params.split(";"))
            if key.strip()
        }.get("codecs", "opus")
        if codecs != "opus":
            raise MediaTypeError("audio/ogg is accepted only with codecs=opus", unsupported=True)
        return OGG_OPUS
    if base not in _CHECKS:
        raise MediaTypeError(
            f"media type {base or '(none)'!r} is not supported; supported: {', '.join(sorted(_CHECKS))}",
            unsupported=True,
        )
    return base


def check(content_type: str, head: bytes) -> str:
    """The canonical type when ``head`` (a file's first bytes) matches the declared ``content_type``."""
    mime = normalize(content_type)
    if not _CHECKS[mime](head[:HEAD_BYTES]):
        raise MediaTypeError(f"the file content does not match the declared type {mime}", unsupported=False)
    return mime


def detect(head: bytes) -> str | None:
    """Best guess from the bytes alone (files fetched by link with a vague ``Content-Type``)."""
    head = head[:HEAD_BYTES]
    if _ftyp(head):
        if _is_3gp(head):
            return "video/3gpp"
        return "audio/mp4" if head[8:11] == b"M4A" else "video/mp4"
    if head.startswith(_ZIP):
        for marker, mime in ((b"word/", _DOCX), (b"xl/", _XLSX), (b"ppt/", _PPTX)):
            if marker in head:
                return mime
        return None
    if head.startswith(_CFB):
        return "application/msword"
    for mime in ("image/jpeg", "image/png", "image/webp", "application/pdf", OGG_OPUS, "audio/amr"):
        if _CHECKS[mime](head):
            return mime
    for mime in ("audio/aac", "audio/mpeg", "text/plain"):
        if _CHECKS[mime](head):
            return mime
    return None


def allowed_for_message(message_type: str, mime: str) -> bool:
    """Whether a message of ``message_type`` may carry a file of type ``mime``."""
    prefixes = _MESSAGE_TYPE_PREFIX.get(message_type)
    return prefixes is None or mime.startswith(prefixes)
