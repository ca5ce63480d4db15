"""The bus between webapp and coreapp: request/reply RPC with timeouts.

Payloads are JSON-able dicts.  A handler answers with a dict or raises ``ApiError``; the caller gets the dict
back or the same ``ApiError`` re-raised, so an On-Prem error code crosses the bus unchanged.  A request that
gets no answer in time raises ``ApiError(NOT_READY)``: to the API user an unreachable coreapp is a coreapp
that is not ready.  Two implementations: ``LocalBus`` (in-process) and ``MqttBus`` (MQTT 5 via Mosquitto).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

from shared.errors import ApiError, ErrorCode

Payload = dict[str, Any]
RpcHandler = Callable[[str, Payload], Awaitable[Payload]]


def ok_reply(result: Payload) -> Payload:
    return {"ok": result}


def error_reply(error: ApiError) -> Payload:
    return {"error": error.to_dict()}


def unwrap_reply(reply: Payload) -> Payload:
    """The result of a reply, or its ``ApiError`` raised."""
    if "error" in reply:
        raise ApiError.from_dict(reply["error"])
    result = reply.get("ok")
    if not isinstance(result, dict):
        raise ApiError(ErrorCode.GENERIC, "malformed reply from coreapp")
    return result


class Bus(abc.ABC):
    """Request/reply between webapp (caller) and coreapp (server)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; afterwards ``request`` works and a registered handler receives requests."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect; pending requests fail with ``NOT_READY``."""

    @abc.abstractmethod
    def serve(self, handler: RpcHandler) -> None:
        """Make this node the server for RPC requests (coreapp).  Call before ``start``."""

    @abc.abstractmethod
    async def request(self, method: str, payload: Payload, timeout_s: float | None = None) -> Payload:
        """Send ``method`` with ``payload`` to the server and return its result."""
