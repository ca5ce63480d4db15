"""Connections: replay after reconnect, conflict kicks, restarts, faults, bad frames, refused logins."""

from __future__ import annotations

import asyncio
import json
import struct

import msgspec
import pytest

from chatd.app import Chatd
from shared.config import SandboxSettings
from shared.wire import codec, e2e
from shared.wire.frames import (
    Ack,
    Bundles,
    Deliver,
    Error,
    GetBundles,
    Hello,
    Kick,
    Login,
    OfflineDone,
    Ping,
    RegisterRequest,
    Send,
    VerifyRequest,
)
from tests.chatd.client import Admin, Client, issue_cert, register
from tests.chatd.test_messaging import BUSINESS, PHONE, logged_in, receipts, text


async def phone_says(admin: Admin, body: str, phone: str = PHONE) -> str:
    doc = await admin.call(
        "POST", f"/admin/phones/{phone}/send", {"to": BUSINESS, "type": "text", "text": {"body": body}}
    )
    return str(doc["id"])


async def test_unacked_pushes_are_replayed_after_reconnect(
    chatd: Chatd, settings: SandboxSettings, admin: Admin
) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE})
    client = await Client.connect(settings.port, chatd.ca_file)
    identity = await register(client, admin, "1", "2025550100")
    first = await phone_says(admin, "while you were away")  # business not logged in yet: it waits
    phone_key = bytes.fromhex((await admin.call("GET", f"/admin/phones/{PHONE}"))["devices"][0]["identity_key"])

    await client.login(BUSINESS, identity)
    deliver = await client.next_push()
    assert isinstance(deliver, Deliver) and deliver.message_id == first
    done = await client.next_push()
    assert isinstance(done, OfflineDone) and done.count == 1
    await client.close()  # never acked

    client = await Client.connect(settings.fallback_port, chatd.ca_file)  # the fallback port serves the same
    await client.login(BUSINESS, identity)
    again = await client.next_push()
    assert isinstance(again, Deliver) and again.message_id == first and again.id == deliver.id
    _, plaintext = await e2e.decrypt_first(identity, phone_key, again.envelope)
    assert json.loads(plaintext)["text"]["body"] == "while you were away"
    await client.ack(again)
    assert isinstance(await client.next_push(), OfflineDone)
    await client.request(Ping())  # the ack has been processed once the ping is answered
    await client.close()

    client = await Client.connect(settings.port, chatd.ca_file)
    await client.login(BUSINESS, identity)
    done = await client.next_push()
    assert isinstance(done, OfflineDone) and done.count == 0
    await client.close()


async def test_second_login_kicks_the_first(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE})
    first, identity = await logged_in(chatd, settings, admin)
    second = await Client.connect(settings.port, chatd.ca_file)
    await second.login(BUSINESS, identity)
    kick = await first.next_push()
    assert isinstance(kick, Kick) and kick.conflict
    assert kick.reason == "Conflict: Detected multiple instances with the same number"
    await asyncio.wait_for(first.closed.wait(), 5)
    assert isinstance(await second.next_push(), OfflineDone)
    msg_id = await phone_says(admin, "to the new one")
    deliver = await second.next_push()
    assert isinstance(deliver, Deliver) and deliver.message_id == msg_id
    await first.close()
    await second.close()


async def test_restart_keeps_accounts_phones_and_sessions(settings: SandboxSettings) -> None:
    app = Chatd(settings)
    await app.start()
    admin = Admin(app.admin_url)
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE, "name": "Sam"})
    client, identity = await logged_in(app, settings, admin)
    bundles = await client.request(GetBundles(wa_id=PHONE))
    assert isinstance(bundles, Bundles)
    session, envelope = await e2e.encrypt_first(identity, bundles.devices[0], text("before"))
    assert isinstance(await client.request(Send(message_id="b1", to=PHONE, envelopes=[envelope], timestamp=1)), Ack)
    await receipts(client, 2)
    await admin.call("PATCH", f"/admin/phones/{PHONE}", {"online": False, "blocked": False, "client_version": "2.21.1"})
    session, envelope = await e2e.encrypt(session, text("held over the restart"))
    assert isinstance(await client.request(Send(message_id="b2", to=PHONE, envelopes=[envelope], timestamp=1)), Ack)
    await client.close()
    await admin.close()
    await app.stop()

    app = Chatd(settings)
    await app.start()
    admin = Admin(app.admin_url)
    try:
        phone = await admin.call("GET", f"/admin/phones/{PHONE}")
        assert (phone["name"], phone["online"], phone["client_version"], phone["held_count"]) == (
            "Sam",
            False,
            "2.21.1",
            1,
        )
        client = await Client.connect(settings.port, app.ca_file)
        await client.login(BUSINESS, identity)  # the account and its identity key survived
        assert isinstance(await client.next_push(), OfflineDone)
        await admin.call("PATCH", f"/admin/phones/{PHONE}", {"online": True})
        await receipts(client, 2)
        session, envelope = await e2e.encrypt(session, text("after"))
        assert isinstance(await client.request(Send(message_id="b3", to=PHONE, envelopes=[envelope], timestamp=1)), Ack)
        await receipts(client, 2)
        # a resend of an id seen before the restart is still recognised
        assert isinstance(await client.request(Send(message_id="b1", to=PHONE, envelopes=[envelope], timestamp=1)), Ack)
        inbox = (await admin.call("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        assert [m["text"]["body"] for m in inbox] == ["before", "held over the restart", "after"]
        reply = await phone_says(admin, "phone after restart")
        deliver = await client.next_push()
        assert isinstance(deliver, Deliver) and deliver.message_id == reply
        session, plaintext = await e2e.decrypt(session, deliver.envelope)
        assert json.loads(plaintext)["text"]["body"] == "phone after restart"
        await client.close()
    finally:
        await admin.close()
        await app.stop()


async def test_refuse_port_fault(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/faults", {"kind": "refuse_port", "port": settings.port})
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(settings.port, chatd.ca_file)
    client = await Client.connect(settings.fallback_port, chatd.ca_file)
    assert isinstance(await client.request(Ping()), Error)  # not logged in, but answered
    await client.close()
    assert (await admin.call("GET", "/admin/faults"))["faults"] == [{"kind": "refuse_port", "port": settings.port}]
    await admin.call("DELETE", "/admin/faults")
    client = await Client.connect(settings.port, chatd.ca_file)
    await client.close()
    await admin.call("POST", "/admin/faults", {"kind": "nonsense"}, expect=400)


async def test_drop_after_fault(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE})
    client, identity = await logged_in(chatd, settings, admin)  # Register, Verify, Challenge, LoginOk, OfflineDone
    await client.close()
    await admin.call("POST", "/admin/faults", {"kind": "drop_after", "frames": 2})
    client = await Client.connect(settings.port, chatd.ca_file)
    await client.login(BUSINESS, identity)  # frames 1 and 2
    await asyncio.wait_for(client.closed.wait(), 5)  # OfflineDone would be the third
    await admin.call("DELETE", "/admin/faults")
    await client.close()


async def test_bad_frames_get_an_error_and_the_server_survives(
    chatd: Chatd, settings: SandboxSettings, admin: Admin
) -> None:
    client = await Client.connect(settings.port, chatd.ca_file)
    garbage = b"\x93not msgpack at all"
    await client.send_raw(struct.pack(">I", len(garbage)) + garbage)
    unknown_tag = msgspec.msgpack.encode({"t": "nope", "id": 7})
    await client.send_raw(struct.pack(">I", len(unknown_tag)) + unknown_tag)
    for frame_id in (0, 7):  # the id is salvaged when the map has one, so a request fails fast
        error = await client.next_push()
        assert isinstance(error, Error) and error.code == 1025 and "bad frame" in error.message
        assert error.id == frame_id
    reply = await client.request(Ping())
    assert isinstance(reply, Error) and reply.code == 401  # still talking: Ping before login is refused politely
    await client.send_raw(struct.pack(">I", codec.MAX_FRAME_BYTES + 1))  # no way to resynchronise: closed
    error = await client.next_push()
    assert isinstance(error, Error) and "exceeds" in error.message
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()

    client = await Client.connect(settings.port, chatd.ca_file)  # the server is fine
    reply = await client.request(Hello(wa_id="19999999999", client_version="1"))
    assert isinstance(reply, Error) and reply.code == 401
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()
    assert (await admin.call("GET", "/admin/health")) == {"status": "ok"}


async def test_registration_and_login_refusals(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    client = await Client.connect(settings.port, chatd.ca_file)
    cert = await issue_cert(admin, "98", "9123456789", "X")
    reply = await client.request(RegisterRequest(cc="98", phone_number="9123456789", method="sms", cert=cert))
    assert isinstance(reply, Error) and reply.code == 1005 and "sanctioned" in reply.message
    cert = await issue_cert(admin, "1", "2025550199", "X")
    reply = await client.request(RegisterRequest(cc="1", phone_number="2025550100", method="sms", cert=cert))
    assert isinstance(reply, Error) and reply.code == 1005 and "issued for" in reply.message
    reply = await client.request(RegisterRequest(cc="1", phone_number="2025550100", method="sms", cert="bm9wZQ=="))
    assert isinstance(reply, Error) and reply.code == 1005
    reply = await client.request(RegisterRequest(cc="1", phone_number="20x", method="sms", cert=cert))
    assert isinstance(reply, Error) and reply.code == 1009
    await admin.call("GET", "/admin/codes/12025550100", expect=404)

    identity = await e2e.Identity.create(5)
    good = await issue_cert(admin, "1", "2025550100", "Y")
    await client.request(RegisterRequest(cc="1", phone_number="2025550100", method="voice", cert=good))
    code = (await admin.call("GET", "/admin/codes/12025550100"))["code"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    verify = VerifyRequest(
        cc="1",
        phone_number="2025550100",
        code=wrong,
        identity_key=identity.public_key,
        signed_prekey=identity.signed_prekey(),
        one_time_prekeys=identity.one_time_prekeys(),
    )
    reply = await client.request(verify)
    assert isinstance(reply, Error) and reply.code == 1005
    verify.code = code
    assert (await client.request(verify)).wa_id == BUSINESS  # type: ignore[union-attr]

    reply = await client.request(Hello(wa_id=BUSINESS, client_version="2.41.2"))
    impostor = await e2e.Identity.create(1)
    reply = await client.request(Login(signature=impostor.sign(reply.nonce)))  # type: ignore[union-attr]
    assert isinstance(reply, Error) and reply.code == 401
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()


async def test_admin_api_errors_are_json(chatd: Chatd, admin: Admin) -> None:
    assert "no phone" in (await admin.call("GET", "/admin/phones/19999999999", expect=404))["error"]
    await admin.call("POST", "/admin/phones", {"wa_id": "abc"}, expect=400)
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE}, expect=201)
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE}, expect=409)
    await admin.call("PATCH", f"/admin/phones/{PHONE}", {"online": "yes"}, expect=400)
    await admin.call("PATCH", f"/admin/phones/{PHONE}", {"colour": "red"}, expect=400)
    await admin.call(
        "POST", f"/admin/phones/{PHONE}/send", {"to": "1555", "type": "text", "text": {"body": "x"}}, expect=400
    )
    await admin.call("POST", f"/admin/phones/{PHONE}/read", {"id": "nope"}, expect=404)
    await admin.call("POST", "/admin/clock/advance", {"seconds": -1}, expect=400)
    assert (await admin.call("GET", "/admin/nothing", expect=404))["error"]
    created = await admin.call(
        "POST", "/admin/templates", {"name": "promo", "language": "de", "status": "paused"}, expect=201
    )
    assert created["status"] == "paused"
    names = {(t["name"], t["status"]) for t in (await admin.call("GET", "/admin/templates"))["templates"]}
    assert {("hello_world", "approved"), ("promo", "paused")} <= names
    async with admin.http.post(admin.base + "/admin/faults", data=b"{nope") as resp:
        assert resp.status == 400 and "error" in await resp.json()


async def test_pushes_wait_while_the_business_is_offline(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE})
    client, _ = await logged_in(chatd, settings, admin)
    await client.close()
    await asyncio.sleep(0.1)
    await phone_says(admin, "queued")
    business = (await admin.call("GET", "/admin/businesses"))["businesses"][0]
    assert business == {**business, "connected": False, "pending_pushes": 1}
