"""SANDBOX.md "Faults": each injected through chatd's admin API; the client survives it with nothing lost and
nothing delivered or reported twice (inbox once per id, each status webhook and receipt row once)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from sqlalchemy import select

from chatd.cli import run
from coreapp.storage.tables import messages
from shared.config import DbEngine, DbSettings
from tests.coreapp.conftest import BUSINESS_WA_ID, Sandbox, eventually
from tests.sandbox.netkit import (
    PHONE,
    TunedFactory,
    assert_each_once,
    hooks,
    ready_core,
    rows,
    send_text,
    status_of,
    tuned_core_fixture,  # noqa: F401  (fixture)
    wait_all_read,
)

FAST = {"ping_interval_s": 0.5, "offline_drain_timeout_s": 1.0}
"""Pings every 0.5 s: a reply missing for 2 s (two intervals) counts as lost."""


async def _phone_sends(sandbox: Sandbox, body: str) -> str:
    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": body}}
    )
    return str(sent["id"])


async def _inbound_once(core, ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    async def stored() -> bool:
        found = await rows(core, select(messages.c.id).where(messages.c.direction == "in"))
        return sorted(r.id for r in found) == sorted(ids)

    await eventually(stored, timeout_s=30)
    hooked = [m["id"] for body in await hooks(core, "inbound_message") for m in body["messages"]]
    assert sorted(hooked) == sorted(ids)


async def test_duplicate_pushes_are_stored_once(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory
) -> None:
    core = await ready_core(sandbox, tuned_core, backend, **FAST)
    await sandbox.admin("POST", "/admin/faults", {"kind": "duplicate_pushes"})
    inbound = [await _phone_sends(sandbox, f"in{n}") for n in range(3)]
    outbound = [await send_text(core, f"out{n}") for n in range(3)]
    await wait_all_read(core, outbound)
    await _inbound_once(core, inbound)
    await asyncio.sleep(0.5)  # the doubled receipts have all arrived
    await assert_each_once(core, sandbox, outbound)


async def test_lost_acks_are_resent_after_the_reply_timeout(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    core = await ready_core(sandbox, tuned_core, backend, **FAST)
    assert core.app.chat is not None
    generation = core.app.chat.generation
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": False})  # no receipt can stand in for the ack
    await sandbox.admin("POST", "/admin/faults", {"kind": "lose_acks", "count": 2})
    ids = [await send_text(core, f"m{n}") for n in range(3)]

    async def all_sent() -> bool:
        return all([await status_of(core, i) == "sent" for i in ids])

    await eventually(all_sent, timeout_s=30)
    assert core.app.chat.generation > generation  # reconnected to send the unanswered ones again
    assert "no reply" in caplog.text and "resend" in caplog.text
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})
    await wait_all_read(core, ids)
    await assert_each_once(core, sandbox, ids)


async def test_delayed_acks(backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory) -> None:
    core = await ready_core(sandbox, tuned_core, backend, ping_interval_s=5.0)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": False})  # only the ack can make it sent
    await sandbox.admin("POST", "/admin/faults", {"kind": "delay_acks", "seconds": 1.5})
    ids = [await send_text(core, f"m{n}") for n in range(3)]
    await asyncio.sleep(0.7)
    assert {await status_of(core, i) for i in ids} == {"accepted"}

    async def all_sent() -> bool:
        return all([await status_of(core, i) == "sent" for i in ids])

    await eventually(all_sent, timeout_s=10)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})
    await wait_all_read(core, ids)
    await assert_each_once(core, sandbox, ids)


async def test_corrupt_frame_is_dropped_and_replayed(
    backend: DbSettings, sandbox: Sandbox, tuned_core: TunedFactory, caplog: pytest.LogCaptureFixture
) -> None:
    core = await ready_core(sandbox, tuned_core, backend, **FAST)
    assert core.app.chat is not None
    generation = core.app.chat.generation
    await sandbox.admin("POST", "/admin/faults", {"kind": "corrupt_frame"})
    message_id = await _phone_sends(sandbox, "garbled on the way")
    await _inbound_once(core, [message_id])
    assert "dropped a frame that does not decode" in caplog.text
    assert core.app.chat.generation > generation  # it reconnected and got the push again
    assert await core.health() == "connected"
    assert (await sandbox.admin("GET", "/admin/faults"))["faults"] == []  # used up
    reply = await send_text(core, "still talking")
    await wait_all_read(core, [reply])


async def test_stalled_offline_backlog_gives_up_waiting(
    sandbox: Sandbox, tuned_core: TunedFactory, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    db = DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "core.db")
    core = await ready_core(sandbox, tuned_core, db, ping_interval_s=5.0, offline_drain_timeout_s=1.0)
    await sandbox.admin("POST", "/admin/faults", {"kind": "stall_offline", "seconds": 4})
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")
    started = time.monotonic()
    message_id = await _phone_sends(sandbox, "sent during the stall")

    async def connected() -> bool:
        return await core.health() == "connected"

    await eventually(connected, timeout_s=10)
    assert time.monotonic() - started < 4.0  # ready before the backlog came
    assert "offline messages not drained" in caplog.text
    await _inbound_once(core, [message_id])  # then the backlog arrives, once


async def test_refused_logins_are_retried(
    sandbox: Sandbox, tuned_core: TunedFactory, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    db = DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "core.db")
    core = await ready_core(sandbox, tuned_core, db, ping_interval_s=5.0)
    assert core.app.chat is not None
    generation = core.app.chat.generation
    await sandbox.admin("POST", "/admin/faults", {"kind": "refuse_login", "count": 2})
    await sandbox.admin("POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")

    async def back() -> bool:
        return (
            core.app.chat is not None
            and core.app.chat.generation >= generation + 3
            and (await core.health() == "connected")
        )

    await eventually(back, timeout_s=20)
    assert caplog.text.count("login refused") >= 2
    assert core.app.chat.fatal_error is None
    message_id = await send_text(core, "after the refusals")
    await wait_all_read(core, [message_id])


async def test_cli_covers_the_fault_clock_limit_and_kick_routes(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ("--admin-url", f"http://127.0.0.1:{sandbox.settings.admin_port}")

    async def cli(*argv: str) -> tuple[int, Any]:
        code = await asyncio.to_thread(run, [*url, *argv])
        out = capsys.readouterr()
        return code, (json.loads(out.out) if code == 0 and out.out.strip() else out.err)

    code, doc = await cli("fault", "lose_acks", "probability=0.5")
    assert code == 0 and doc["faults"] == [{"kind": "lose_acks", "count": 0, "probability": 0.5}]
    code, doc = await cli("fault", "maintenance", "seconds=30")
    assert code == 0 and {f["kind"] for f in doc["faults"]} == {"lose_acks", "maintenance"}
    code, doc = await cli("fault", "nonsense")
    assert code == 1 and "known:" in doc
    code, doc = await cli("clear-faults")
    assert doc == {"faults": []}
    limits = ("enabled=true", "pair_burst=45", "pair_interval_s=6", "min_client_version=2.41.3")
    code, doc = await cli("limits-set", *limits)
    assert (doc["enabled"], doc["pair_burst"], doc["min_client_version"]) == (True, 45, "2.41.3")
    code, doc = await cli("business-limits", BUSINESS_WA_ID, "throughput_mps=250", "quality_limited=true")
    assert doc["businesses"][BUSINESS_WA_ID] == {"throughput_mps": 250, "quality_limited": True}
    code, doc = await cli("limits")
    assert doc["throughput_mps"] == 80
    code, doc = await cli("template-create", "later", "--approval-delay", "600")
    assert code == 0 and doc["status"] == "pending"
    code, doc = await cli("clock-advance", "600")
    code, doc = await cli("clock")
    assert code == 0 and doc["offset_s"] == 600
    code, doc = await cli("templates")
    assert next(t for t in doc["templates"] if t["name"] == "later")["status"] == "approved"
    code, doc = await cli("kick", BUSINESS_WA_ID)
    assert code == 1 and "404" in doc
    code, doc = await cli("policy")
    assert code == 0 and isinstance(doc, dict)
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE})
    code, doc = await cli("sent", PHONE)
    assert doc == {"messages": []}
