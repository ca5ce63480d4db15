"""The chat listeners: TLS 1.3 on the main port and the fallback port, both serving the same protocol.

A ``refuse_port`` fault closes that port's listener (new connections are refused, as when 5222 is blocked and
only 443 answers); clearing the fault listens again.  Existing connections are not touched by it.
A ``maintenance`` fault kicks every logged-in session (its logins are then refused with code 2 until it ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from chatd.faults import Faults
from chatd.session import Session, State

log = logging.getLogger("openprem.chatd.server")

SessionFactory = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Session]


class ChatServer:
    def __init__(
        self,
        host: str,
        ports: list[int],
        ssl_context: ssl.SSLContext,
        new_session: SessionFactory,
        faults: Faults,
    ) -> None:
        self._host = host
        self._ports = list(dict.fromkeys(ports))
        self._ssl = ssl_context
        self._new_session = new_session
        self._faults = faults
        self._servers: dict[int, asyncio.Server] = {}
        self._sessions: set[Session] = set()
        self._apply_lock = asyncio.Lock()
        self._stopped = False
        faults.on_change(self._apply)

    @property
    def ports(self) -> list[int]:
        """Ports currently listening."""
        return sorted(self._servers)

    async def start(self) -> None:
        await self._apply()

    async def stop(self) -> None:
        self._stopped = True
        for port in list(self._servers):
            await self._close(port)
        for session in list(self._sessions):
            session.close()

    async def _apply(self) -> None:
        async with self._apply_lock:  # faults set and cleared in quick succession apply in order
            refused = self._faults.refused_ports()
            for port in self._ports:
                if self._stopped:
                    return
                if port in refused and port in self._servers:
                    log.warning("fault: refusing connections on port %d", port)
                    await self._close(port)
                elif port not in refused and port not in self._servers:
                    await self._open(port)
            left = self._faults.maintenance_left()
            if left:
                reason = f"API maintenance (error code 2): service unavailable for up to {left:.0f}s"
                for session in [s for s in self._sessions if s.state is State.READY]:
                    log.warning("maintenance: kicking +%s", session.wa_id)
                    await session.kick(reason, conflict=False)

    async def _open(self, port: int) -> None:
        self._servers[port] = await asyncio.start_server(
            self._serve, self._host, port, ssl=self._ssl, reuse_address=True, ssl_handshake_timeout=10.0
        )
        log.info("chat listener on %s:%d (TLS 1.3)", self._host, port)

    async def _close(self, port: int) -> None:
        server = self._servers.pop(port, None)
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 0.5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = self._new_session(reader, writer)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
