"""What services see of the chat connection (so they depend on an interface, not the state machine)."""

from __future__ import annotations

import asyncio
import enum
from typing import Protocol

from shared.wire.frames import Frame


class ConnState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    SYNCING = "syncing"
    READY = "ready"


class ChatLink(Protocol):
    @property
    def state(self) -> ConnState: ...

    @property
    def generation(self) -> int:
        """Incremented for every new session: a changed value means a reconnect happened."""
        ...

    async def wait_ready(self) -> None: ...

    async def request(self, frame: Frame, timeout_s: float = 30.0) -> Frame:
        """Send and wait for the reply; ``ChatRemoteError`` for an ``Error``, ``ChatUnavailable`` otherwise."""
        ...

    async def send_request(self, frame: Frame) -> asyncio.Future[Frame]:
        """Send without waiting; the future resolves with the reply (pipelining)."""
        ...

    async def ack(self, push: Frame) -> None:
        """Acknowledge a server push (after its effects are committed)."""
        ...
