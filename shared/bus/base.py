"""The bus between webapp and coreapp: request/reply RPC with timeouts.

Callers use ``call(method, request)`` with a typed ``Method`` of ``shared.bus.contract``: the request struct is
encoded here, the reply decoded and validated here, so both ends of every RPC are checked by mypy and a reply
that does not fit the contract is an ``ApiError`` (1014) at the boundary.  The server registers one
``RawHandler`` (coreapp's ``RpcRegistry``), which decodes the request against the same ``Method``.

Underneath, the bus moves bytes: ``request_raw`` sends a method name and the request's JSON and returns the
reply's JSON, or raises the ``ApiError`` the handler raised (its On-Prem code crosses unchanged).  A request
that gets no answer in time raises ``ApiError(NOT_READY)``: to the API user an unreachable coreapp is a coreapp
that is not ready.  Two implementations: ``LocalBus`` (in-process) and ``MqttBus`` (MQTT 5 via Mosquitto).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from shared.bus.rpc import Method, Rep, Req
from shared.errors import ApiError, ErrorCode

Payload = dict[str, Any]
RawHandler = Callable[[str, bytes], Awaitable[bytes]]
"""``(method name, request JSON) -> reply JSON``; raises ``ApiError`` for an error reply."""
NodeWatcher = Callable[[str, Payload | None], None]


class Bus(abc.ABC):
    """Request/reply between webapp (caller) and coreapp (server)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; afterwards ``call`` works and a registered handler receives requests."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect; pending requests fail with ``NOT_READY``."""

    @abc.abstractmethod
    def serve(self, handler: RawHandler) -> None:
        """Make this node the server for RPC requests (coreapp).  Call before ``start``."""

    @abc.abstractmethod
    async def unserve(self) -> None:
        """Stop taking requests (coreapp's first step at shutdown): requests arriving from now on are answered
        1011 at once, and the call returns when the requests already being handled have been answered."""

    @abc.abstractmethod
    async def request_raw(
        self, method: str, payload: bytes, timeout_s: float | None = None, route: str | None = None
    ) -> bytes:
        """Send ``method`` with its request JSON to the server and return its reply JSON.

        ``route`` (multiconnect) names the server: ``"master"`` or ``"shard/<n>"``, whoever serves that route now
        (``add_route``); ``None`` is the single coreapp of a deployment without multiconnect."""

    async def call(
        self, method: Method[Req, Rep], request: Req, timeout_s: float | None = None, route: str | None = None
    ) -> Rep:
        """The typed RPC: encode ``request``, send it, decode and validate the reply."""
        raw = await self.request_raw(method.name, method.encode_request(request), timeout_s, route)
        return method.decode_reply(raw)

    async def add_route(self, route: str) -> None:
        """Serve requests sent to ``route`` from now on (multiconnect: the holder of that route's lease)."""
        raise NotImplementedError(f"{type(self).__name__} has one server; routes need the MQTT bus")

    async def remove_route(self, route: str) -> None:
        """Stop receiving requests sent to ``route`` (the lease was given up)."""
        raise NotImplementedError(f"{type(self).__name__} has one server; routes need the MQTT bus")

    async def publish_state(self, state: Payload) -> None:
        """This node's state for the others (retained; ``{"state": "gone"}`` when it disconnects).  The
        in-process bus has no other nodes: nothing to do."""
        del state

    def abandon_route(self, route: str, reason: str) -> int:
        """Fail the requests waiting on ``route`` now (its server is gone); how many.  Only the MQTT bus has
        routes."""
        del route, reason
        return 0

    def watch_nodes(self, callback: NodeWatcher) -> None:
        """Call ``callback(node_id, state)`` for every node state published (``None``: the node is gone).  Call
        before ``start``.  The in-process bus has no other nodes: never called."""
        del callback

    async def request(self, method: str, payload: Payload, timeout_s: float | None = None) -> Payload:
        """Untyped: a JSON object in, a JSON object out.  For tools and tests that play a caller other than
        webapp (and so may send what the contract refuses); the product calls ``call``."""
        raw = await self.request_raw(method, orjson.dumps(payload), timeout_s)
        result = orjson.loads(raw)
        if not isinstance(result, dict):
            raise ApiError(ErrorCode.INTERNAL, f"malformed reply from coreapp to {method}")
        return result
