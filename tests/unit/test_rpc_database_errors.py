"""A database failure inside an RPC handler (the server down or restarting) reaches the client as the On-Prem
"Database error occurred" (1023, HTTP 500), not as a generic 1000; other errors are untouched."""

from __future__ import annotations

import msgspec
import pytest
from sqlalchemy.exc import OperationalError

from coreapp.api.registry import RpcRegistry
from shared.bus.rpc import Empty, Method
from shared.errors import ApiError, ErrorCode

LOST = Method("test.lost", Empty, Empty, doc="")
INVALID = Method("test.invalid", Empty, Empty, doc="")


def _registry() -> RpcRegistry:
    registry = RpcRegistry()

    async def lost(_request: Empty) -> Empty:
        raise OperationalError("SELECT 1", {}, Exception("(2013) Lost connection to server during query"))

    async def invalid(_request: Empty) -> Empty:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "bad")

    registry.add(LOST, lost)
    registry.add(INVALID, invalid)
    return registry


async def test_a_database_error_is_answered_1023() -> None:
    with pytest.raises(ApiError) as caught:
        await _registry().handle("test.lost", b"{}")
    assert caught.value.code is ErrorCode.DATABASE_ERROR
    assert (caught.value.code.code, caught.value.code.http_status) == (1023, 500)


async def test_other_errors_pass_through() -> None:
    with pytest.raises(ApiError) as caught:
        await _registry().handle("test.invalid", b"{}")
    assert caught.value.code is ErrorCode.INVALID_PARAMETER


def test_a_method_is_registered_once() -> None:
    registry = _registry()

    async def again(_request: Empty) -> Empty:
        return Empty()

    with pytest.raises(ValueError, match="registered twice"):
        registry.add(LOST, again)
    assert msgspec.json.encode(Empty()) == b"{}"
