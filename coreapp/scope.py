"""The chat scope: the connection of the registered number and the services that live on it, as one unit.

It is built by the composition root for a registered number and replaced as a whole after a (re-)registration
or a restore; ``CurrentChat`` is the one place everything else asks for "the connection now" (the API, the
media and contacts services, the stats), so nothing keeps a getter closure or a bound reference to an old one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from coreapp.chat.connection import ChatConnection
from coreapp.chat.link import ConnState
from coreapp.services.inbound import InboundService
from coreapp.services.outbound import OutboundSender
from coreapp.services.receipts import ReceiptService
from shared.bus.contract.health import GatewayStatus
from shared.ids import WaId

log = logging.getLogger("openprem.coreapp")

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ChatScope:
    """One registered number's connection and its services; ``start`` and ``stop`` run them in order."""

    wa_id: WaId
    connection: ChatConnection
    sender: OutboundSender
    inbound: InboundService
    receipts: ReceiptService

    def start(self) -> None:
        self.sender.start()
        self.connection.start()

    async def stop(self) -> None:
        """The connection first (no new pushes or acks), then the sender; each bounded, failures logged."""
        for name, step in (("chat connection", self.connection.stop()), ("sender", self.sender.stop())):
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await step
            except Exception:
                log.exception("stopping %s failed", name)


class CurrentChat:
    """The chat scope in use, if any.  ``replace`` and ``clear`` are serialised: one scope runs at a time."""

    def __init__(self) -> None:
        self._scope: ChatScope | None = None
        self._lock = asyncio.Lock()

    @property
    def scope(self) -> ChatScope | None:
        return self._scope

    @property
    def link(self) -> ChatConnection | None:
        return self._scope.connection if self._scope is not None else None

    @property
    def wa_id(self) -> WaId | None:
        return self._scope.wa_id if self._scope is not None else None

    @property
    def state(self) -> ConnState | None:
        return self._scope.connection.state if self._scope is not None else None

    def gateway_status(self) -> GatewayStatus:
        if self._scope is None:
            return GatewayStatus.UNREGISTERED
        state = self._scope.connection.state
        if state is ConnState.DISCONNECTED:
            return GatewayStatus.DISCONNECTED
        if state is ConnState.READY:
            return GatewayStatus.CONNECTED
        return GatewayStatus.CONNECTING

    def wake_sender(self) -> None:
        """A message was committed: the sender of the current scope, if any, picks it up."""
        if self._scope is not None:
            self._scope.sender.wake()

    async def replace(self, build: Callable[[], ChatScope]) -> None:
        """Stop the scope in use, then build and start a new one (``build`` runs only once the old one stopped)."""
        async with self._lock:
            await self._stop()
            self._scope = build()
            self._scope.start()

    async def clear(self) -> None:
        """Stop the scope in use (a restore replaces the keys under it; shutdown)."""
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        scope, self._scope = self._scope, None
        if scope is not None:
            await scope.stop()
