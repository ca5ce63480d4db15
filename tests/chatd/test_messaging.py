"""The walking skeleton against chatd alone: register, log in, send to a phone, receive from it."""

from __future__ import annotations

import json
import time

from chatd.app import Chatd
from shared.config import SandboxSettings
from shared.wire import e2e
from shared.wire.frames import (
    Ack,
    Bundles,
    Deliver,
    EnvelopeKind,
    GetBundles,
    GetTemplates,
    OfflineDone,
    Ping,
    Pong,
    Receipt,
    ReceiptStatus,
    Send,
    Templates,
)
from tests.chatd.client import Admin, Client, register

BUSINESS = "12025550100"
PHONE = "12025550123"


def text(body: str) -> bytes:
    return json.dumps({"type": "text", "text": {"body": body}}).encode()


async def logged_in(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> tuple[Client, e2e.Identity]:
    client = await Client.connect(settings.port, chatd.ca_file)
    identity = await register(client, admin, "1", "2025550100")
    await client.login(BUSINESS, identity)
    done = await client.next_push()
    assert isinstance(done, OfflineDone) and done.count == 0
    return client, identity


async def receipts(client: Client, count: int) -> list[Receipt]:
    got = []
    for _ in range(count):
        frame = await client.next_push()
        assert isinstance(frame, Receipt), frame
        await client.ack(frame)
        got.append(frame)
    return got


async def send_first(client: Client, identity: e2e.Identity, message_id: str, body: str) -> tuple[str, Bundles]:
    bundles = await client.request(GetBundles(wa_id=PHONE))
    assert isinstance(bundles, Bundles) and len(bundles.devices) == 1
    assert bundles.devices[0].one_time_prekey is not None
    session, envelope = await e2e.encrypt_first(identity, bundles.devices[0], text(body))
    assert envelope.kind is EnvelopeKind.PREKEY
    reply = await client.request(
        Send(message_id=message_id, to=PHONE, envelopes=[envelope], timestamp=int(time.time()))
    )
    assert isinstance(reply, Ack)
    return session, bundles


async def test_send_and_receive(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"}, expect=201)
    client, identity = await logged_in(chatd, settings, admin)
    pong = await client.request(Ping())
    assert isinstance(pong, Pong) and pong.server_time > 0
    templates = await client.request(GetTemplates())
    assert isinstance(templates, Templates)
    assert any(t.name == "hello_world" and t.namespace == "openprem_demo" for t in templates.templates)

    session, _ = await send_first(client, identity, "m1", "hi")
    statuses = await receipts(client, 2)
    assert [(r.message_id, r.status, r.recipient) for r in statuses] == [
        ("m1", ReceiptStatus.DELIVERED, PHONE),
        ("m1", ReceiptStatus.READ, PHONE),
    ]
    inbox = (await admin.call("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    assert inbox == [
        {
            "id": "m1",
            "from": BUSINESS,
            "timestamp": inbox[0]["timestamp"],
            "device_id": 0,
            "type": "text",
            "text": {"body": "hi"},
        }
    ]

    # the phone answers within the session the business opened
    sent = await admin.call(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS, "type": "text", "text": {"body": "hello back"}}
    )
    deliver = await client.next_push()
    assert isinstance(deliver, Deliver) and deliver.message_id == sent["id"]
    assert (deliver.sender, deliver.sender_name, deliver.sender_device) == (PHONE, "Kerry Fisher", 0)
    assert deliver.envelope.kind is EnvelopeKind.MESSAGE
    session, plaintext = await e2e.decrypt(session, deliver.envelope)
    assert json.loads(plaintext) == {"type": "text", "text": {"body": "hello back"}}
    await client.ack(deliver)

    session, envelope = await e2e.encrypt(session, text("second"))
    assert isinstance(await client.request(Send(message_id="m2", to=PHONE, envelopes=[envelope], timestamp=1)), Ack)
    await receipts(client, 2)
    bodies = [m["text"]["body"] for m in (await admin.call("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]]
    assert bodies == ["hi", "second"]
    business = (await admin.call("GET", "/admin/businesses"))["businesses"][0]
    assert business["connected"] and business["pending_pushes"] == 0
    await client.close()


async def test_duplicate_send_is_acked_not_redelivered(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE, "auto_read": False})
    await admin.call("PATCH", f"/admin/phones/{PHONE}", {"auto_read": False})
    client, identity = await logged_in(chatd, settings, admin)
    session, _ = await send_first(client, identity, "dup", "once")
    [delivered] = await receipts(client, 1)
    assert delivered.status is ReceiptStatus.DELIVERED
    _, envelope = await e2e.encrypt(session, text("once again"))
    assert isinstance(await client.request(Send(message_id="dup", to=PHONE, envelopes=[envelope], timestamp=1)), Ack)
    await admin.call("POST", f"/admin/phones/{PHONE}/read", {"id": "dup"})
    [read] = await receipts(client, 1)
    assert read.status is ReceiptStatus.READ  # no second "delivered" in between
    inbox = (await admin.call("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    assert [m["text"]["body"] for m in inbox] == ["once"]
    await client.close()


async def test_offline_phone_gets_messages_when_back(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE, "online": False})
    client, identity = await logged_in(chatd, settings, admin)
    await send_first(client, identity, "later", "are you there?")
    assert client.pushes.empty()
    phone = await admin.call("GET", f"/admin/phones/{PHONE}")
    assert phone["online"] is False and phone["held_count"] == 1
    assert (await admin.call("GET", f"/admin/phones/{PHONE}/inbox"))["messages"] == []
    await admin.call("PATCH", f"/admin/phones/{PHONE}", {"online": True})
    assert [r.status for r in await receipts(client, 2)] == [ReceiptStatus.DELIVERED, ReceiptStatus.READ]
    await client.close()


async def test_undecryptable_message_fails_and_is_not_faked(
    chatd: Chatd, settings: SandboxSettings, admin: Admin
) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE, "devices": 2})
    client, identity = await logged_in(chatd, settings, admin)
    bundles = await client.request(GetBundles(wa_id=PHONE))
    assert isinstance(bundles, Bundles) and [d.device_id for d in bundles.devices] == [0, 1]
    _, good = await e2e.encrypt_first(identity, bundles.devices[0], text("two devices"))
    _, other = await e2e.encrypt_first(identity, bundles.devices[1], text("two devices"))
    bad = type(other)(device_id=1, kind=other.kind, body=other.body[:-5] + b"xxxxx")
    assert isinstance(await client.request(Send(message_id="md", to=PHONE, envelopes=[good, bad], timestamp=1)), Ack)
    got = {(r.device_id, r.status) for r in await receipts(client, 3)}
    assert got == {(0, ReceiptStatus.DELIVERED), (0, ReceiptStatus.READ), (1, ReceiptStatus.FAILED)}
    inbox = (await admin.call("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
    assert len(inbox) == 1 and inbox[0]["device_id"] == 0
    await client.close()


async def test_clock_advance_fires_receipts(settings: SandboxSettings, tmp_path) -> None:
    slow = settings.model_copy(update={"receipt_delay_s": 3600.0, "read_delay_s": 7200.0})
    app = Chatd(slow)
    await app.start()
    admin = Admin(app.admin_url)
    try:
        await admin.call("POST", "/admin/phones", {"wa_id": PHONE})
        client, identity = await logged_in(app, slow, admin)
        await send_first(client, identity, "slow", "tick")
        assert client.pushes.empty()
        await admin.call("POST", "/admin/clock/advance", {"seconds": 3601})
        [delivered] = await receipts(client, 1)
        assert delivered.status is ReceiptStatus.DELIVERED and delivered.timestamp > time.time() + 3000
        await admin.call("POST", "/admin/clock/advance", {"seconds": 3600})
        [read] = await receipts(client, 1)
        assert read.status is ReceiptStatus.READ
        await client.close()
    finally:
        await admin.close()
        await app.stop()
