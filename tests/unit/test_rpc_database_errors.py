"""A database failure inside an RPC handler (the server down or restarting) reaches the client as the On-Prem
"Database error occurred" (1023, HTTP 500), not as a generic 1000; other errors are untouched."""

from __future__ import annotations

from typing import cast

import pytest
from sqlalchemy.exc import OperationalError

from coreapp.api.handlers import CoreView, RpcApi
from coreapp.services.registration import RegistrationService
from coreapp.storage.settings import SettingsStore
from shared.bus.base import Payload
from shared.errors import ApiError, ErrorCode


def _api() -> RpcApi:
    # Only routing is exercised: the registration and settings services are never called.
    api = RpcApi(CoreView(lambda: None, lambda: None), cast(RegistrationService, None), cast(SettingsStore, None))

    async def lost(_payload: Payload) -> Payload:
        raise OperationalError("SELECT 1", {}, Exception("(2013) Lost connection to server during query"))

    async def invalid(_payload: Payload) -> Payload:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "bad")

    api.add_routes({"test.lost": lost, "test.invalid": invalid})
    return api


async def test_a_database_error_is_answered_1023() -> None:
    with pytest.raises(ApiError) as caught:
        await _api().handle("test.lost", {})
    assert caught.value.code is ErrorCode.DATABASE_ERROR
    assert (caught.value.code.code, caught.value.code.http_status) == (1023, 500)


async def test_other_errors_pass_through() -> None:
    with pytest.raises(ApiError) as caught:
        await _api().handle("test.invalid", {})
    assert caught.value.code is ErrorCode.INVALID_PARAMETER
