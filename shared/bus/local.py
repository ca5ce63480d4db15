"""In-process bus for the embedded default and unit tests.

Payloads are copied through JSON on the way in and out so that both sides see exactly what the MQTT bus
would deliver and never share mutable objects.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from shared.bus.base import Bus, Payload, RpcHandler, error_reply, ok_reply, unwrap_reply
from shared.errors import ApiError, ErrorCode

log = logging.getLogger("openprem.bus")


class LocalBus(Bus):
    def __init__(self, default_timeout_s: float = 30.0) -> None:
        self._handler: RpcHandler | None = None
        self._timeout = default_timeout_s
        self._running = False

    async def start(self) -> None:
        self._running = True

    async def stop(self) -> None:
        self._running = False

    def serve(self, handler: RpcHandler) -> None:
        self._handler = handler

    async def request(self, method: str, payload: Payload, timeout_s: float | None = None) -> Payload:
        if not self._running or self._handler is None:
            raise ApiError(ErrorCode.NOT_READY, "coreapp is not running")
        copied: Payload = orjson.loads(orjson.dumps(payload))
        try:
            async with asyncio.timeout(timeout_s or self._timeout):
                result = await self._handler(method, copied)
            reply = ok_reply(result)
        except ApiError as exc:
            reply = error_reply(exc)
        except TimeoutError:
            raise ApiError(ErrorCode.NOT_READY, "coreapp did not answer in time") from None
        except Exception:
            log.exception("rpc handler failed for %s", method)
            reply = error_reply(ApiError(ErrorCode.GENERIC))
        return unwrap_reply(orjson.loads(orjson.dumps(reply)))
