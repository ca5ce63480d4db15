"""Dispatch layer: one live connection, its request/reply correlation and the stream of server pushes.

Requests get the next client frame id and wait on a future keyed by that id; the reader resolves it with the
reply.  Pushes (frames the server starts) go to ``on_push``.  When the stream ends every waiting request fails
at once with ``ChatUnavailable``.  A frame that does not decode is dropped (logged with the reason) and the
session is closed: if it was a push it stays unacked on the network, which replays it after the reconnect; if it
was a reply, its request is failed now rather than left waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from coreapp.chat.errors import ChatRemoteError, ChatUnavailable, UnexpectedFrame
from coreapp.chat.transport import ChannelClosed, FrameChannel
from shared.tasks import TaskSupervisor
from shared.wire.codec import FrameError
from shared.wire.frames import Deliver, Error, Frame, IdentityChanged, Kick, OfflineDone, Ping, Pong, Receipt

log = logging.getLogger("openprem.coreapp.chat")

PUSH_TYPES: tuple[type[Frame], ...] = (Deliver, Receipt, OfflineDone, IdentityChanged, Kick)
"""Frames the server sends on its own initiative (numbered by the server), never replies."""

DEFAULT_TIMEOUT_S = 30.0

F = TypeVar("F")


class ChatSession:
    def __init__(self, channel: FrameChannel, supervisor: TaskSupervisor, on_push: Callable[[Frame], None]) -> None:
        self._channel = channel
        self._supervisor = supervisor
        self._on_push = on_push
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._sent_at: dict[int, float] = {}
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.close_reason = ""

    @property
    def port(self) -> int:
        return self._channel.port

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def start(self) -> None:
        self._reader = self._supervisor.spawn("chat-reader", self._read_loop())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def send_request(self, frame: Frame) -> asyncio.Future[Frame]:
        """Write ``frame`` with a fresh id and return the future of its reply (for pipelining)."""
        if self.closed:
            raise ChatUnavailable(f"session closed: {self.close_reason}")
        frame.id = next(self._ids)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[frame.id] = future
        self._sent_at[frame.id] = time.monotonic()
        try:
            await self._channel.write(frame)
        except ChannelClosed:
            self._pending.pop(frame.id, None)
            self._sent_at.pop(frame.id, None)
            await self.close("write failed")
            raise
        return future

    async def request(self, frame: Frame, timeout_s: float = DEFAULT_TIMEOUT_S) -> Frame:
        """Send ``frame`` and return its reply; ``ChatRemoteError`` for an ``Error`` reply."""
        future = await self.send_request(frame)
        self._sent_at.pop(frame.id, None)  # it has its own timeout: not the watchdog's (pipelined requests only)
        try:
            async with asyncio.timeout(timeout_s):
                reply = await future
        except TimeoutError:
            self._pending.pop(frame.id, None)
            self._sent_at.pop(frame.id, None)
            raise ChatUnavailable(f"no reply to {type(frame).__name__} within {timeout_s:.0f}s") from None
        return check_reply(reply)

    def oldest_unanswered_s(self) -> float:
        """How long the oldest pipelined request (``send_request``) has waited for its reply (0: none waits)."""
        for frame_id in list(self._sent_at):
            future = self._pending.get(frame_id)
            if future is None or future.done():
                del self._sent_at[frame_id]
                continue
            return time.monotonic() - self._sent_at[frame_id]
        return 0.0

    async def reply(self, frame: Frame) -> None:
        """Answer a push (``Ack``, ``Pong``) with the push's id; the caller sets ``frame.id``."""
        await self._channel.write(frame)

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.close_reason = reason
        self._closed.set()
        self._fail_pending(reason)
        await self._channel.close()
        current = asyncio.current_task()
        if self._reader is not None and self._reader is not current:
            self._reader.cancel()

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        self._sent_at.clear()
        for future in pending.values():
            if not future.done():
                future.set_exception(ChatUnavailable(f"connection lost: {reason}"))
                future.exception()  # mark retrieved: nobody may be waiting on a pipelined request any more

    async def _read_loop(self) -> None:
        reason = "stream ended"
        try:
            while True:
                try:
                    frame = await self._channel.read()
                except FrameError as exc:
                    log.warning(
                        "dropped a frame that does not decode (%s); reconnecting so the network replays it", exc
                    )
                    reason = f"undecodable frame: {exc}"
                    self.close_reason = self.close_reason or reason
                    break
                self._route(frame)
                if isinstance(frame, Ping):
                    await self._channel.write(Pong(id=frame.id))
        except ChannelClosed as exc:
            reason = str(exc)
        finally:
            self.close_reason = self.close_reason or reason
            self._closed.set()
            self._fail_pending(self.close_reason)
            await self._channel.close()

    def _route(self, frame: Frame) -> None:
        if isinstance(frame, PUSH_TYPES):
            self._on_push(frame)
            return
        if isinstance(frame, Ping):
            return
        future = self._pending.pop(frame.id, None)
        self._sent_at.pop(frame.id, None)
        if future is None or future.done():
            log.warning("dropped a %s for unknown request id %d", type(frame).__name__, frame.id)
            return
        future.set_result(frame)


def check_reply(reply: Frame) -> Frame:
    if isinstance(reply, Error):
        raise ChatRemoteError(reply.code, reply.message)
    return reply


def expect(reply: Frame, kind: type[F]) -> F:
    """``reply`` as ``kind`` or ``UnexpectedFrame``."""
    if not isinstance(reply, kind):
        raise UnexpectedFrame(f"expected {kind.__name__}, got {type(reply).__name__}")
    return reply
