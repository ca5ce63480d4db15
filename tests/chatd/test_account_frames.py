"""chatd's side of ``CheckContacts`` and ``SetTwoStep``: answers, refusals, and a PIN that survives a restart."""

from __future__ import annotations

from chatd.app import Chatd
from shared.config import SandboxSettings
from shared.wire.frames import Ack, CheckContacts, ContactResult, ContactsResult, Error, RegisterRequest, SetTwoStep
from tests.chatd.client import Admin, Client, issue_cert
from tests.chatd.test_messaging import BUSINESS, PHONE, logged_in


async def test_check_contacts(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    await admin.call("POST", "/admin/phones", {"wa_id": PHONE, "name": "Sam"})
    await admin.call("POST", "/admin/phones", {"wa_id": "12025550124", "name": "Moved"})
    await admin.call("PATCH", "/admin/phones/12025550124", {"changed_number": True})
    client, _ = await logged_in(chatd, settings, admin)
    numbers = [PHONE, "12025550124", "12025550999", BUSINESS]
    reply = await client.request(CheckContacts(numbers=numbers))
    assert isinstance(reply, ContactsResult)
    assert reply.results == [
        ContactResult(input=PHONE, wa_id=PHONE),
        ContactResult(input="12025550124", wa_id=None),  # changed number: no longer a user
        ContactResult(input="12025550999", wa_id=None),
        ContactResult(input=BUSINESS, wa_id=BUSINESS),
    ]
    reply = await client.request(CheckContacts(numbers=["1"] * 1001))
    assert isinstance(reply, Error) and reply.code == 1009
    await client.close()


async def test_two_step_frames(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    anonymous = await Client.connect(settings.port, chatd.ca_file)
    reply = await anonymous.request(SetTwoStep(pin="123456"))
    assert isinstance(reply, Error) and reply.code == 401  # needs a logged-in business
    await anonymous.close()
    client, _ = await logged_in(chatd, settings, admin)
    for bad in ("12345", "abcdef", ""):
        reply = await client.request(SetTwoStep(pin=bad))
        assert isinstance(reply, Error) and reply.code == 1009, bad
    assert isinstance(await client.request(SetTwoStep(pin="123456")), Ack)
    assert isinstance(await client.request(SetTwoStep()), Ack)  # off
    assert isinstance(await client.request(SetTwoStep(pin="654321")), Ack)
    await client.close()


async def test_pin_survives_a_restart(settings: SandboxSettings) -> None:
    app = Chatd(settings)
    await app.start()
    admin = Admin(app.admin_url)
    client, _ = await logged_in(app, settings, admin)
    assert isinstance(await client.request(SetTwoStep(pin="123456")), Ack)
    await client.close()
    await admin.close()
    await app.stop()

    app = Chatd(settings)
    await app.start()
    admin = Admin(app.admin_url)
    try:
        client = await Client.connect(settings.port, app.ca_file)
        cert = await issue_cert(admin, "1", "2025550100", "Acme")
        request = RegisterRequest(cc="1", phone_number="2025550100", method="voice", cert=cert)
        reply = await client.request(request)
        assert isinstance(reply, Error) and reply.code == 1005 and "two-step" in reply.message
        request.pin = "123456"
        assert (await client.request(request)).status == "code_sent"  # type: ignore[union-attr]
        assert (await admin.call("GET", "/admin/codes/12025550100"))["method"] == "voice"
        await client.close()
    finally:
        await admin.close()
        await app.stop()
