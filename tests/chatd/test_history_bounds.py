"""chatd's own history is bounded, so a long run does not grow it without end: each phone keeps its newest
``inbox_limit`` messages, and the network remembers the newest ``seen_limit`` business message ids for dropping
resends.  Both bounds hold in memory and in chatd's store (after a restart)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatd.app import Chatd
from shared.config import SandboxSettings
from shared.wire import e2e
from shared.wire.frames import Ack, ReceiptStatus, Send
from tests.chatd.client import Admin
from tests.chatd.test_messaging import PHONE, logged_in, receipts, send_first, text


@pytest.fixture
def bounded(settings: SandboxSettings) -> SandboxSettings:
    return settings.model_copy(update={"inbox_limit": 3, "seen_limit": 10})


@pytest.fixture
async def small_chatd(bounded: SandboxSettings) -> AsyncIterator[Chatd]:
    app = Chatd(bounded)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()  # a second stop (the test stops it to restart) does nothing


async def _inbox(admin: Admin) -> list[str]:
    return [m["id"] for m in (await admin.call("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]]


async def test_inbox_and_seen_ids_keep_only_the_newest(small_chatd: Chatd, bounded: SandboxSettings) -> None:
    admin = Admin(small_chatd.admin_url)
    try:
        await admin.call("POST", "/admin/phones", {"wa_id": PHONE, "auto_read": False})
        await admin.call("PATCH", f"/admin/phones/{PHONE}", {"auto_read": False})
        client, identity = await logged_in(small_chatd, bounded, admin)
        session, _ = await send_first(client, identity, "m1", "1")
        for i in range(2, 13):
            session, envelope = await e2e.encrypt(session, text(str(i)))
            reply = await client.request(Send(message_id=f"m{i}", to=PHONE, envelopes=[envelope], timestamp=i))
            assert isinstance(reply, Ack)
        delivered = await receipts(client, 12)
        assert {r.message_id for r in delivered} == {f"m{i}" for i in range(1, 13)}
        assert all(r.status is ReceiptStatus.DELIVERED for r in delivered)
        assert await _inbox(admin) == ["m10", "m11", "m12"]

        # m12 is still remembered: a resend is acked and not delivered again.
        session, envelope = await e2e.encrypt(session, text("12 again"))
        resend = Send(message_id="m12", to=PHONE, envelopes=[envelope], timestamp=1)
        assert isinstance(await client.request(resend), Ack)
        # m1 is past the 10 remembered ids: the network takes it as new (the bound is real).
        session, envelope = await e2e.encrypt(session, text("1 again"))
        resend = Send(message_id="m1", to=PHONE, envelopes=[envelope], timestamp=1)
        assert isinstance(await client.request(resend), Ack)
        [again] = await receipts(client, 1)
        assert again.message_id == "m1"
        assert await _inbox(admin) == ["m11", "m12", "m1"]
        await client.close()
    finally:
        await admin.close()

    # The store holds the same bounded history: after a restart the inbox is unchanged.
    await small_chatd.stop()
    restarted = Chatd(bounded)
    await restarted.start()
    admin = Admin(restarted.admin_url)
    try:
        assert await _inbox(admin) == ["m11", "m12", "m1"]
    finally:
        await admin.close()
        await restarted.stop()
