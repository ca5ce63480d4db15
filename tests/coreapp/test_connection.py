"""Registration, login, the ready gate, the fallback port and the conflict kick, against a real chatd."""

from __future__ import annotations

import asyncio

import pytest

from coreapp.chat.connection import CONFLICT_MESSAGE
from coreapp.chat.link import ConnState
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import (
    BUSINESS_CC,
    BUSINESS_NUMBER,
    PHONE,
    CoreFactory,
    Sandbox,
    eventually,
    free_port,
    register,
)


async def test_register_verify_login_ready_and_restart(sandbox: Sandbox, make_core: CoreFactory, sqlite_db) -> None:
    core = await make_core(sqlite_db)
    assert await core.health() == "unregistered"
    await register(core, sandbox)
    assert core.app.chat is not None and core.app.chat.state is ConnState.READY
    again = await core.rpc(
        "account.register", {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "method": "sms", "cert": "x"}
    )
    assert again == {"status": "registered"}

    await core.app.stop()
    restarted = await make_core(sqlite_db)

    async def connected() -> bool:
        return await restarted.health() == "connected"

    await eventually(connected)


async def test_verify_without_register_is_1006(make_core: CoreFactory, sqlite_db) -> None:
    core = await make_core(sqlite_db)
    with pytest.raises(ApiError) as info:
        await core.rpc("account.verify", {"code": "123456"})
    assert info.value.code is ErrorCode.NOT_FOUND


async def test_wrong_code_is_refused(sandbox: Sandbox, make_core: CoreFactory, sqlite_db) -> None:
    core = await make_core(sqlite_db)
    cert = (
        await sandbox.admin("POST", "/admin/certificates", {"cc": "1", "phone_number": "6315551001", "vname": "X"})
    )["cert"]
    await core.rpc("account.register", {"cc": "1", "phone_number": "6315551001", "method": "sms", "cert": cert})
    code = (await sandbox.admin("GET", "/admin/codes/16315551001"))["code"]
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(ApiError) as info:
        await core.rpc("account.verify", {"code": wrong})
    assert info.value.code is ErrorCode.ACCESS_DENIED
    assert await core.health() == "unregistered"


async def test_fallback_port_when_port_refused(sandbox: Sandbox, make_core: CoreFactory, sqlite_db) -> None:
    core = await make_core(sqlite_db, port=free_port(), fallback=sandbox.settings.port)
    await register(core, sandbox)
    assert core.app.chat is not None
    assert core.app.chat.port == sandbox.settings.port


async def test_send_before_ready_is_1011(make_core: CoreFactory, sqlite_db) -> None:
    core = await make_core(sqlite_db)
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": "hi"}})
    assert info.value.code is ErrorCode.NOT_READY


async def test_unreachable_network_registration_is_1011(make_core: CoreFactory, sqlite_db) -> None:
    core = await make_core(sqlite_db, port=free_port(), fallback=free_port())
    with pytest.raises(ApiError) as info:
        await core.rpc("account.register", {"cc": "1", "phone_number": "6315551002", "method": "sms", "cert": "x"})
    assert info.value.code is ErrorCode.NOT_READY


async def test_conflict_kick_stops_reconnecting(
    sandbox: Sandbox, make_core: CoreFactory, sqlite_db, caplog: pytest.LogCaptureFixture
) -> None:
    first = await make_core(sqlite_db)
    await register(first, sandbox)
    second = await make_core(sqlite_db)  # same DB: same number and identity, a second instance

    async def second_connected() -> bool:
        return await second.health() == "connected"

    await eventually(second_connected)

    async def first_gave_up() -> bool:
        return first.app.chat is not None and first.app.chat.fatal_error == CONFLICT_MESSAGE

    await eventually(first_gave_up)
    assert await first.health() == "disconnected"
    assert CONFLICT_MESSAGE in caplog.text
    generation = first.app.chat.generation if first.app.chat else -1
    await asyncio.sleep(1.5)  # longer than the first reconnect backoff
    assert first.app.chat is not None and first.app.chat.generation == generation
    assert await first.health() == "disconnected"
    assert await second.health() == "connected"
