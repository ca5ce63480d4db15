"""Framing layer: a TLS connection (port, then fallback port) carrying length-prefixed frames."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

from coreapp.chat.errors import ChatUnavailable, ChatUnreachable
from shared.config import ChatSettings
from shared.wire import codec
from shared.wire.codec import FrameError
from shared.wire.frames import Frame

log = logging.getLogger("openprem.coreapp.chat")


class ChannelClosed(ChatUnavailable):
    """The stream ended or can no longer be framed (an oversized length desynchronises it)."""


class FrameChannel:
    """One TLS stream of frames.  ``read`` raises ``FrameError`` for a body that does not decode (drop it and
    read on) and ``ChannelClosed`` when the stream is over."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        port: int,
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.port = port
        self._may_write = may_write
        """Multiconnect: false once this node's shard lease ran out by its own clock (self-fencing: checked at
        every frame, so a process that was stopped past its lease and resumes sends nothing more)."""

    async def read(self) -> Frame:
        try:
            body = await codec.read_body(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise ChannelClosed(f"stream closed: {exc!r}") from exc
        except FrameError as exc:  # oversized length: the stream cannot be resynchronised
            raise ChannelClosed(str(exc)) from exc
        return codec.decode(body)

    async def write(self, frame: Frame) -> None:
        if self._writer.is_closing():
            raise ChannelClosed("stream is closing")
        if self._may_write is not None and not self._may_write():
            self._writer.close()
            raise ChannelClosed("this node no longer holds its shard: the connection is closed unwritten")
        try:
            self._writer.write(codec.encode(frame))
            await self._writer.drain()
        except (ConnectionError, ssl.SSLError, RuntimeError) as exc:
            raise ChannelClosed(f"write failed: {exc!r}") from exc

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        try:
            async with asyncio.timeout(2.0):
                await self._writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            pass


def _tls_context(settings: ChatSettings) -> ssl.SSLContext:
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


async def open_channel(settings: ChatSettings, may_write: Callable[[], bool] | None = None) -> FrameChannel:
    """Connect to ``settings.port``; when refused, unreachable or too slow, to ``settings.fallback_port``."""
    context = await asyncio.to_thread(_tls_context, settings)  # reads the CA file: not on the loop
    ports = [settings.port] if settings.fallback_port == settings.port else [settings.port, settings.fallback_port]
    failures: list[str] = []
    for port in ports:
        try:
            async with asyncio.timeout(settings.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    settings.host, port, ssl=context, server_hostname=settings.server_name
                )
        except (TimeoutError, OSError) as exc:  # ConnectionRefusedError and ssl.SSLError are OSErrors
            failures.append(f"{port}: {exc!r}")
            log.warning("chat connect to %s:%d failed: %r", settings.host, port, exc)
            continue
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.info("chat connected to %s:%d%s", settings.host, port, " (fallback port)" if port != ports[0] else "")
        return FrameChannel(reader, writer, port, may_write)
    raise ChatUnreachable(f"cannot reach {settings.host}: " + "; ".join(failures))
