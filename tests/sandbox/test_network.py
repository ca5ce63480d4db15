"""SANDBOX.md "Behaviours to reproduce", network side: maintenance, rate limits, the fallback port, two instances
of one number, an expired client build, template approval and rendering, the network's clock.  Each row is set
up through chatd's admin API; the test asserts what the client shows (API answers, statuses, health, the log)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from coreapp.chat.connection import CONFLICT_MESSAGE
from shared.config import DbEngine, DbSettings
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import BUSINESS_WA_ID, Sandbox, eventually
from tests.sandbox.netkit import (
    PHONE,
    TunedFactory,
    assert_each_once,
    hooks,
    inbox,
    ready_core,
    send_text,
    status_hooks,
    status_of,
    tuned_core_fixture,  # noqa: F401  (fixture)
    wait_all_read,
)

FAST = {"ping_interval_s": 0.5}


def _sqlite(tmp_path: Any, name: str = "core.db") -> DbSettings:
    return DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / name)


async def _health_is(core: Any, *wanted: str) -> bool:
    return await core.health() in wanted


async def test_api_maintenance_then_recovers_alone(
    sandbox: Sandbox, tuned_core: TunedFactory, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    core = await ready_core(sandbox, tuned_core, _sqlite(tmp_path), **FAST)
    await sandbox.admin("POST", "/admin/faults", {"kind": "maintenance", "seconds": 4})
    await eventually(lambda: _health_is(core, "connecting", "disconnected"), timeout_s=5)
    with pytest.raises(ApiError) as info:
        await send_text(core, "during maintenance")
    assert info.value.code is ErrorCode.NOT_READY
    await eventually(lambda: _health_is(core, "connected"), timeout_s=30)  # nobody cleared the fault
    assert "error code 2" in caplog.text
    assert core.app.chat is not None and core.app.chat.fatal_error is None
    message_id = await send_text(core, "after maintenance")
    await wait_all_read(core, [message_id])


async def test_maintenance_ends_when_the_sandbox_clock_moves(
    sandbox: Sandbox, tuned_core: TunedFactory, tmp_path: Any
) -> None:
    core = await ready_core(sandbox, tuned_core, _sqlite(tmp_path), **FAST)
    await sandbox.admin("POST", "/admin/faults", {"kind": "maintenance", "seconds": 300})
    await eventually(lambda: _health_is(core, "connecting", "disconnected"), timeout_s=5)
    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 300})
    await eventually(lambda: _health_is(core, "connected"), timeout_s=30)


async def test_rate_limits_defer_and_deliver_everything_once(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory
) -> None:
    core = await ready_core(sandbox, tuned_core, backend, **FAST)
    limits = {"enabled": True, "pair_burst": 3, "pair_interval_s": 0.5, "throughput_mps": 80}
    assert (await sandbox.admin("PATCH", "/admin/limits", limits))["pair_burst"] == 3
    ids = [await send_text(core, f"m{n}") for n in range(7)]  # 3 go at once, 4 get 429 and are sent again
    await wait_all_read(core, ids, timeout_s=90)
    await assert_each_once(core, sandbox, ids)

    # A business under a quality restriction gets 471: its message waits, accepted, until the restriction lifts.
    await sandbox.admin("PATCH", f"/admin/limits/{BUSINESS_WA_ID}", {"quality_limited": True})
    held = await send_text(core, "restricted")
    await asyncio.sleep(1.0)
    assert await status_of(core, held) == "accepted"
    await sandbox.admin("PATCH", f"/admin/limits/{BUSINESS_WA_ID}", {"quality_limited": False})
    await wait_all_read(core, [held], timeout_s=30)
    assert sorted(await status_hooks(core, held)) == ["delivered", "read", "sent"]


async def test_throughput_cap_per_business(sandbox: Sandbox, tuned_core: TunedFactory, tmp_path: Any) -> None:
    core = await ready_core(sandbox, tuned_core, _sqlite(tmp_path), **FAST)
    await sandbox.admin("PATCH", "/admin/limits", {"enabled": True})
    await sandbox.admin("PATCH", f"/admin/limits/{BUSINESS_WA_ID}", {"throughput_mps": 2})
    bad = await sandbox.http.patch(
        f"http://127.0.0.1:{sandbox.settings.admin_port}/admin/limits/{BUSINESS_WA_ID}", json={"throughput_mps": 1001}
    )
    assert bad.status == 400
    ids = [await send_text(core, f"t{n}") for n in range(6)]
    await wait_all_read(core, ids, timeout_s=60)
    await assert_each_once(core, sandbox, ids)


async def test_port_refused_uses_the_fallback_then_the_primary_again(
    sandbox: Sandbox, tuned_core: TunedFactory, tmp_path: Any
) -> None:
    primary, fallback = sandbox.settings.port, sandbox.settings.fallback_port
    core = await ready_core(sandbox, tuned_core, _sqlite(tmp_path), **FAST)
    chat = core.app.chat
    assert chat is not None and chat.port == primary
    await sandbox.admin("POST", "/admin/faults", {"kind": "refuse_port", "port": primary})
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")

    async def on(port: int) -> bool:
        return chat.port == port and await core.health() == "connected"

    await eventually(lambda: on(fallback), timeout_s=15)
    message_id = await send_text(core, "over the fallback port")
    await wait_all_read(core, [message_id])
    await sandbox.admin("DELETE", "/admin/faults")
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")
    await eventually(lambda: on(primary), timeout_s=15)  # the next connection prefers the primary port


async def test_same_number_on_two_databases_conflict(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = await ready_core(sandbox, tuned_core, backend, **FAST)
    blob = (await first.rpc("settings.backup", {"password": "s3cret-pass"}))["data"]
    second = await tuned_core(_sqlite(tmp_path, "second.db"), **FAST)
    await second.rpc("settings.restore", {"password": "s3cret-pass", "data": blob})  # same identity, other DB
    await eventually(lambda: _health_is(second, "connected"), timeout_s=20)
    chat = first.app.chat
    assert chat is not None

    async def gave_up() -> bool:
        return chat.fatal_error == CONFLICT_MESSAGE

    await eventually(gave_up)
    assert await first.health() == "disconnected"
    assert any(r.levelname == "CRITICAL" and CONFLICT_MESSAGE in r.getMessage() for r in caplog.records)
    generation = chat.generation
    await asyncio.sleep(2.0)  # several backoff periods: no reconnect loop
    assert chat.generation == generation and await first.health() == "disconnected"
    with pytest.raises(ApiError) as info:
        await send_text(first, "from the old instance")
    assert info.value.code is ErrorCode.NOT_READY
    assert await second.health() == "connected"


async def test_expired_client_build_is_refused_for_good(
    sandbox: Sandbox, tuned_core: TunedFactory, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    core = await ready_core(sandbox, tuned_core, _sqlite(tmp_path), client_version="2.41.2", **FAST)
    limits = await sandbox.admin("PATCH", "/admin/limits", {"min_client_version": "2.41.3"})
    assert limits["min_client_version"] == "2.41.3"
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")
    chat = core.app.chat
    assert chat is not None

    async def expired() -> bool:
        return chat.fatal_error is not None and "app expired" in chat.fatal_error

    await eventually(expired)
    assert await core.health() == "disconnected"
    assert any(r.levelname == "CRITICAL" and "app expired" in r.getMessage() for r in caplog.records)
    generation = chat.generation
    await asyncio.sleep(2.0)
    assert chat.generation == generation  # no reconnect loop
    with pytest.raises(ApiError) as info:
        await send_text(core, "from an expired build")
    assert info.value.code is ErrorCode.NOT_READY


def _template_send(name: str, params: list[str], namespace: str = "openprem_demo") -> dict[str, Any]:
    return {
        "to": PHONE,
        "type": "template",
        "template": {
            "namespace": namespace,
            "name": name,
            "language": {"policy": "deterministic", "code": "en_US"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}],
        },
    }


async def test_template_visible_only_after_its_approval_delay(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory
) -> None:
    core = await ready_core(sandbox, tuned_core, backend, **FAST)
    created = await sandbox.admin(
        "POST",
        "/admin/templates",
        {"name": "spring_sale", "status": "approved", "approval_delay_s": 1200, "components": [
            {"type": "BODY", "text": "Hi {{1}}, spring sale!"}
        ]},
    )  # fmt: skip
    assert created["status"] == "pending" and created["approves_at"] > time.time()
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")  # a reconnect re-syncs templates
    await eventually(lambda: _health_is(core, "connected"))
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.send", _template_send("spring_sale", ["Kerry"]))
    assert info.value.code is ErrorCode.TEMPLATE_MISSING

    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 1200})
    chat = core.app.chat
    assert chat is not None

    async def sendable() -> str | None:
        try:
            return str((await core.rpc("messages.send", _template_send("spring_sale", ["Kerry"])))["id"])
        except ApiError as exc:
            assert exc.code is ErrorCode.TEMPLATE_MISSING
            return None

    message_id = await eventually(sendable, timeout_s=15, interval_s=0.25)  # re-synced: the cache aged 20 min
    assert chat.server_now() - time.time() > 1190  # the client follows the network's clock
    await wait_all_read(core, [message_id])


async def test_template_the_phone_cannot_render_fails_structure_unavailable(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory
) -> None:
    core = await ready_core(sandbox, tuned_core, backend, **FAST)
    # The client's cache says order_update takes 2 parameters; the network's copy changes after the sync.
    await sandbox.admin(
        "POST",
        "/admin/templates",
        {"name": "order_update", "components": [{"type": "BODY", "text": "Order {{1}} for {{2}} at {{3}}"}]},
    )
    message_id = str((await core.rpc("messages.send", _template_send("order_update", ["Kerry", "A-1"])))["id"])

    async def failed() -> bool:
        return await status_of(core, message_id) == "failed"

    await eventually(failed, timeout_s=15)
    statuses = [s for s in await _statuses(core, message_id) if s["status"] == "failed"]
    assert len(statuses) == 1
    assert "structure unavailable" in statuses[0]["errors"][0]["title"].lower()
    assert not [m for m in await inbox(sandbox) if m["id"] == message_id]
    # What the client can tell itself is still refused synchronously.
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.send", _template_send("order_update", ["only one"]))
    assert info.value.code is ErrorCode.TEMPLATE_PARAM_COUNT
    with pytest.raises(ApiError) as info:
        await core.rpc("messages.send", _template_send("order_update", ["a", "b"], namespace="wrong_ns"))
    assert info.value.code is ErrorCode.TEMPLATE_MISSING


async def _statuses(core: Any, message_id: str) -> list[dict[str, Any]]:
    return [s for body in await hooks(core) for s in body.get("statuses", []) if s["id"] == message_id]


async def test_network_clock_is_readable(sandbox: Sandbox) -> None:
    before = await sandbox.admin("GET", "/admin/clock")
    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 90})
    after = await sandbox.admin("GET", "/admin/clock")
    assert after["offset_s"] == before["offset_s"] + 90 and after["now"] >= before["now"] + 90


async def test_dropped_connection_mid_stream_loses_nothing(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory
) -> None:
    core = await ready_core(sandbox, tuned_core, backend, **FAST)
    assert core.app.chat is not None
    generation = core.app.chat.generation
    # Each connection dies after 40 frames from chatd (more than the largest backlog: login + 2 receipts each).
    await sandbox.admin("POST", "/admin/faults", {"kind": "drop_after", "frames": 40})
    ids: list[str] = []
    for n in range(16):

        async def send(n: int = n) -> str | None:
            try:
                return await send_text(core, f"m{n}")
            except ApiError as exc:
                assert exc.code is ErrorCode.NOT_READY  # between reconnects
                return None

        ids.append(await eventually(send, timeout_s=30, interval_s=0.1))
    await wait_all_read(core, ids, timeout_s=60)
    await sandbox.admin("DELETE", "/admin/faults")
    assert core.app.chat.generation > generation
    await assert_each_once(core, sandbox, ids)
