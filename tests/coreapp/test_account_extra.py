"""Registration by voice, two-step PINs enforced by the network, and shards in single mode."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import BUSINESS_CC, BUSINESS_NUMBER, BUSINESS_WA_ID, Core, CoreFactory, Sandbox, register

PIN = "123456"


async def _cert(sandbox: Sandbox) -> str:
    body = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "vname": "Acme"}
    return str((await sandbox.admin("POST", "/admin/certificates", body))["cert"])


async def _register(core: Core, sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    payload = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "method": "sms", "cert": await _cert(sandbox)}
    return await core.rpc("account.register", {**payload, **extra})


async def _refused(core: Core, method: str, payload: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as err:
        await core.rpc(method, payload)
    return err.value


async def test_register_by_voice(sandbox: Sandbox, make_core: CoreFactory, sqlite_db: DbSettings) -> None:
    core = await make_core(sqlite_db)
    assert await _register(core, sandbox, method="voice") == {"status": "code_sent", "vname": "Acme"}
    sent = await sandbox.admin("GET", f"/admin/codes/{BUSINESS_WA_ID}")
    assert sent["method"] == "voice" and len(sent["code"]) == 6
    assert await core.rpc("account.verify", {"code": sent["code"]}) == {}
    # Registered now: asking again is "already registered" (webapp's 201).
    assert await _register(core, sandbox, method="voice") == {"status": "registered"}


async def test_two_step_pin_is_required_to_register_again(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, sqlite_db: DbSettings
) -> None:
    core = await make_core(backend)
    await register(core, sandbox)
    for bad in ["12345", "1234567", "abcdef", 123456]:
        assert (await _refused(core, "account.set_two_step", {"pin": bad})).code is ErrorCode.INVALID_PARAMETER
    assert (await _refused(core, "account.set_two_step", {})).code is ErrorCode.MISSING_PARAMETER
    assert await core.rpc("account.set_two_step", {"pin": PIN}) == {}

    fresh = await make_core(sqlite_db)  # a new install (empty database) asks for the same number
    missing = await _refused(fresh, "account.register", {})  # payload checks come first
    assert missing.code is ErrorCode.MISSING_PARAMETER
    err = await _refused_register(fresh, sandbox)
    assert err.code is ErrorCode.ACCESS_DENIED and "two-step" in (err.details or "") and "PIN" in (err.details or "")
    err = await _refused_register(fresh, sandbox, pin="654321")
    assert err.code is ErrorCode.ACCESS_DENIED and "wrong two-step" in (err.details or "")
    assert await _register(fresh, sandbox, pin=PIN) == {"status": "code_sent", "vname": "Acme"}

    # Off again: the PIN is no longer asked for.
    assert await core.rpc("account.remove_two_step") == {}
    assert await _register(fresh, sandbox) == {"status": "code_sent", "vname": "Acme"}


async def _refused_register(core: Core, sandbox: Sandbox, **extra: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        await _register(core, sandbox, **extra)
    return err.value


async def test_two_step_pin_survives_re_registration(
    sandbox: Sandbox, make_core: CoreFactory, sqlite_db: DbSettings, tmp_path
) -> None:
    core = await make_core(sqlite_db)
    await register(core, sandbox)
    assert await core.rpc("account.set_two_step", {"pin": PIN}) == {}
    await core.app.stop()
    again = await make_core(DbSettings(engine=sqlite_db.engine, sqlite_path=tmp_path / "second.db"))
    assert await _register(again, sandbox, pin=PIN) == {"status": "code_sent", "vname": "Acme"}
    code = (await sandbox.admin("GET", f"/admin/codes/{BUSINESS_WA_ID}"))["code"]
    assert await again.rpc("account.verify", {"code": code}) == {}
    third = await make_core(DbSettings(engine=sqlite_db.engine, sqlite_path=tmp_path / "third.db"))
    assert (await _refused_register(third, sandbox)).code is ErrorCode.ACCESS_DENIED


async def test_two_step_needs_a_connection(make_core: CoreFactory, sqlite_db: DbSettings) -> None:
    core = await make_core(sqlite_db)
    assert (await _refused(core, "account.set_two_step", {"pin": PIN})).code is ErrorCode.NOT_READY
    assert (await _refused(core, "account.remove_two_step", {})).code is ErrorCode.NOT_READY


async def test_shards_single_mode(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await make_core(backend)
    number = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER}
    assert await core.rpc("account.get_shards") == {"shards": 1}
    assert (await _refused(core, "account.set_shards", {**number, "shards": 1})).code is ErrorCode.NOT_READY
    await register(core, sandbox)
    assert await core.rpc("account.set_shards", {**number, "shards": 1}) == {"shards": 1}
    assert await core.rpc("account.set_shards", {**number, "shards": 1, "pin": PIN}) == {"shards": 1}
    for shards in (2, 4, 8, 16, 32):
        err = await _refused(core, "account.set_shards", {**number, "shards": shards})
        assert err.code is ErrorCode.INVALID_PARAMETER and "multiconnect is not enabled" in (err.details or "")
    for bad in (0, 3, 64, "1", True):
        err = await _refused(core, "account.set_shards", {**number, "shards": bad})
        assert err.code is ErrorCode.INVALID_PARAMETER and "one of 1, 2, 4" in (err.details or "")
    other = {"cc": "44", "phone_number": BUSINESS_NUMBER, "shards": 1}
    assert (await _refused(core, "account.set_shards", other)).code is ErrorCode.INVALID_PARAMETER
    assert (await _refused(core, "account.set_shards", {"shards": 1})).code is ErrorCode.MISSING_PARAMETER
    assert await core.rpc("account.get_shards") == {"shards": 1}
