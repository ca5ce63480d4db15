"""The batched sender (issue 6): many messages per step, one commit of envelopes + ratchet states per batch.

Checked here on every backend: messages to one phone arrive in the order they were accepted (``seq``) while
messages to different phones interleave; every ``Send`` leaves only after its envelopes and the session states
that made them are committed; a batch whose commit fails sends nothing and goes out later, exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from sqlalchemy import select

from coreapp.services import outbound
from coreapp.storage.tables import messages, signal_sessions
from shared.config import DbSettings
from shared.wire.frames import Frame, Send
from tests.coreapp.conftest import Core, CoreFactory, Sandbox, eventually, register

PHONES = ("12025550141", "12025550142", "12025550143")
PER_PHONE = 8


def _sender(core: Core) -> outbound.OutboundSender:
    chat = core.app.current_chat.scope
    assert chat is not None, "register first"
    return chat.sender


async def _ready_core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings) -> Core:
    for i, wa_id in enumerate(PHONES):
        await sandbox.admin("POST", "/admin/phones", {"wa_id": wa_id, "name": f"Phone {i}"})
    core = await make_core(db)
    await register(core, sandbox)
    return core


async def _rows(core: Core, stmt: Any) -> list[Any]:
    async with core.app.db.engine.connect() as conn:
        return list(await conn.execute(stmt))


async def _send_all(core: Core, tag: str) -> list[str]:
    """``PER_PHONE`` texts to each phone, all at once, interleaved (A0 B0 C0 A1 …)."""
    calls = [
        core.rpc("messages.send", {"to": wa_id, "type": "text", "text": {"body": f"{tag}-{wa_id}-{n}"}})
        for n in range(PER_PHONE)
        for wa_id in PHONES
    ]
    return [reply["id"] for reply in await asyncio.gather(*calls)]


async def _inbox_ids(sandbox: Sandbox, wa_id: str) -> list[str]:
    return [m["id"] for m in (await sandbox.admin("GET", f"/admin/phones/{wa_id}/inbox"))["messages"]]


class _SendSpy:
    """Wraps the link's ``send_request``: records each ``Send`` and checks what the database holds at that
    moment (the crash-safety promise: a SIGKILL right after this call must leave everything needed to resend)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.sent: list[tuple[str, str]] = []
        self.problems: list[str] = []
        link = _sender(core)._link
        self._inner = link.send_request
        link.send_request = self  # type: ignore[method-assign]

    async def __call__(self, frame: Frame) -> asyncio.Future[Frame]:
        if isinstance(frame, Send):
            self.sent.append((frame.to, frame.message_id))
            stored = await _rows(self.core, select(messages.c.envelopes).where(messages.c.id == frame.message_id))
            if not stored or stored[0].envelopes is None:
                self.problems.append(f"{frame.message_id}: sent before its envelopes were committed")
            elif bytes(stored[0].envelopes) != outbound._envelopes_encoder.encode(frame.envelopes):
                self.problems.append(f"{frame.message_id}: sent bytes differ from the stored envelopes")
            devices = {
                int(r.device_id)
                for r in await _rows(
                    self.core, select(signal_sessions.c.device_id).where(signal_sessions.c.peer == frame.to)
                )
            }
            if not {e.device_id for e in frame.envelopes} <= devices:
                self.problems.append(f"{frame.message_id}: sent before the session state was committed")
        return await self._inner(frame)


def _accepted_order(rows: list[Any], wa_id: str) -> list[str]:
    return [r.id for r in rows if r.peer == wa_id]


async def _check_delivery(core: Core, sandbox: Sandbox, ids: list[str], spy: _SendSpy) -> None:
    rows = await _rows(
        core, select(messages.c.id, messages.c.peer).where(messages.c.id.in_(ids)).order_by(messages.c.seq)
    )
    for wa_id in PHONES:
        expected = _accepted_order(rows, wa_id)
        assert len(expected) == PER_PHONE

        async def arrived(wa_id: str = wa_id, expected: list[str] = expected) -> bool:
            return [i for i in await _inbox_ids(sandbox, wa_id) if i in expected] == expected

        await eventually(arrived)  # all of them, in accepted order, each exactly once
        assert [i for _, i in spy.sent if i in expected] == expected  # and sent in that order
    sent = [i for _, i in spy.sent if i in ids]
    assert sent == [r.id for r in rows]  # the sender goes by seq across phones…
    peers = [r.peer for r in rows]
    assert sum(1 for a, b in itertools.pairwise(peers) if a != b) > len(PHONES)  # …which interleave
    assert spy.problems == []


async def test_batch_keeps_per_phone_order_and_commits_before_sending(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    spy = _SendSpy(core)

    # First messages: bundles fetched concurrently, X3DH, then follow-ups chained on the new sessions, all in
    # one batch (the phones must decrypt PREKEY envelopes 2..n in ratchet order).
    first = await _send_all(core, "first")
    await _check_delivery(core, sandbox, first, spy)
    batches = core.app.db.stats()["outbound.encrypt"]["count"]
    assert batches < len(first)  # batched: far fewer commits than messages

    # Established sessions (cached devices, no bundle fetch).
    second = await _send_all(core, "second")
    await _check_delivery(core, sandbox, second, spy)


async def test_a_failed_batch_commit_sends_nothing_and_retries(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    spy = _SendSpy(core)
    store = _sender(core)._messages
    real = store.set_envelopes_many_txn
    failures = 0

    async def fail_once(conn: Any, envelopes: Any) -> None:
        nonlocal failures
        await real(conn, envelopes)
        if failures == 0:
            failures += 1
            raise RuntimeError("injected: the batch commit fails after writing")

    monkeypatch.setattr(store, "set_envelopes_many_txn", fail_once)
    ids = await _send_all(core, "retry")
    await _check_delivery(core, sandbox, ids, spy)
    assert failures == 1
    assert len(spy.sent) == len(ids)  # nothing went out from the failed batch; each message was sent once
