"""In-process bus for the embedded default and unit tests.

Requests and replies cross as the same bytes the MQTT bus sends (``shared.bus.rpc``'s envelope), so both
sides see exactly what MQTT would deliver and never share mutable objects.
"""

from __future__ import annotations

import asyncio
import logging

from shared.bus.base import Bus, RawHandler
from shared.bus.rpc import error_body, ok_body, parse_reply
from shared.errors import ApiError, ErrorCode

log = logging.getLogger("openprem.bus")

UNSERVE_WAIT_S = 10.0


class LocalBus(Bus):
    def __init__(self, default_timeout_s: float = 30.0) -> None:
        self._handler: RawHandler | None = None
        self._timeout = default_timeout_s
        self._running = False
        self._serving = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._running = True
        self._serving = self._handler is not None

    async def stop(self) -> None:
        self._running = False
        self._serving = False

    def serve(self, handler: RawHandler) -> None:
        self._handler = handler
        self._serving = self._running

    async def unserve(self) -> None:
        self._serving = False
        try:
            async with asyncio.timeout(UNSERVE_WAIT_S):
                await self._idle.wait()
        except TimeoutError:
            log.warning("%d requests still running after %.0fs of shutdown", self._in_flight, UNSERVE_WAIT_S)

    async def request_raw(
        self, method: str, payload: bytes, timeout_s: float | None = None, route: str | None = None
    ) -> bytes:
        if route is not None:
            raise ApiError(ErrorCode.NOT_READY, f"no node serves {route}: the in-process bus has one coreapp")
        handler = self._handler
        if not self._running or handler is None:
            raise ApiError(ErrorCode.NOT_READY, "coreapp is not running")
        if not self._serving:
            raise ApiError(ErrorCode.NOT_READY, "coreapp is shutting down")
        self._in_flight += 1
        self._idle.clear()
        try:
            async with asyncio.timeout(timeout_s or self._timeout):
                reply = ok_body(await handler(method, payload))
        except ApiError as exc:
            reply = error_body(exc)
        except TimeoutError:
            raise ApiError(ErrorCode.NOT_READY, "coreapp did not answer in time") from None
        except Exception:
            log.exception("rpc handler failed for %s", method)
            reply = error_body(ApiError(ErrorCode.GENERIC))
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        return parse_reply(reply)
