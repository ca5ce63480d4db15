"""Framing: a 4-byte big-endian length, then one MessagePack-encoded frame.

A length over ``MAX_FRAME_BYTES`` or a body that does not decode raises ``FrameError``; callers log it, drop
the frame (or the connection for an oversized length) and carry on, never crash.
"""

from __future__ import annotations

import asyncio
import struct

import msgspec

from shared.wire.frames import Frame

MAX_FRAME_BYTES = 4 * 1024 * 1024
_LENGTH = struct.Struct(">I")
_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Frame] = msgspec.msgpack.Decoder(Frame)


class FrameError(Exception):
    """A frame could not be read: too large, truncated or undecodable."""


def encode(frame: Frame) -> bytes:
    """Length-prefixed bytes for one frame."""
    body = _encoder.encode(frame)
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME_BYTES}-byte cap")
    return _LENGTH.pack(len(body)) + body


def decode(body: bytes) -> Frame:
    """One frame from its body (without the length prefix)."""
    try:
        return _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise FrameError(f"undecodable frame: {exc}") from exc


async def read_body(reader: asyncio.StreamReader) -> bytes:
    """The next frame body; ``asyncio.IncompleteReadError`` at end of stream."""
    header = await reader.readexactly(_LENGTH.size)
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"announced frame length {length} exceeds the cap")
    return await reader.readexactly(length)
