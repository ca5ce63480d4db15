"""coreapp's RPC registry: one typed handler per ``Method`` of ``shared.bus.contract``, served on the bus.

The registry decodes each request against its method's struct (a malformed one is 1008/1009 before any handler
runs), calls the handler and encodes its reply; handlers see only typed structs.  A database failure inside a
handler is the On-Prem 1023, not 1000.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.exc import DBAPIError

from shared.bus.rpc import Method, Rep, Req
from shared.errors import ApiError, ErrorCode

log = logging.getLogger("openprem.coreapp.api")

_Route = Callable[[bytes], Awaitable[bytes]]


class RpcRegistry:
    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}

    def add(self, method: Method[Req, Rep], handler: Callable[[Req], Awaitable[Rep]]) -> None:
        """Serve ``method`` with ``handler``; a method registered twice is a wiring mistake."""
        if method.name in self._routes:
            raise ValueError(f"RPC method registered twice: {method.name}")

        async def route(raw: bytes) -> bytes:
            return method.encode_reply(await handler(method.decode_request(raw)))

        self._routes[method.name] = route

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._routes)

    async def handle(self, name: str, payload: bytes) -> bytes:
        """The bus handler: route ``name``; unknown methods are ``NOT_FOUND``."""
        route = self._routes.get(name)
        if route is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"unknown method {name}")
        try:
            return await route(payload)
        except DBAPIError as exc:
            # The database is down or restarting (a failover, a restart): the On-Prem code for it, not 1000.
            first = str(exc.orig if exc.orig is not None else exc).splitlines()[0:1]
            log.warning("%s failed on a database error: %s", name, first[0] if first else type(exc).__name__)
            raise ApiError(ErrorCode.DATABASE_ERROR) from exc
