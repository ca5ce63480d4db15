"""The walking skeleton, end to end: one encrypted text each way through every part, on every backend.

webapp, coreapp and chatd run as separate OS processes (SQLite runs the embedded webapp+coreapp process on the
in-process bus beside a separate chatd).  Everything is driven through the public APIs: /v1 and chatd's admin
API; a real HTTP receiver collects the webhooks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import Api, Deployment, WebhookReceiver, wait_until

pytestmark = pytest.mark.e2e

BUSINESS_CC = "1"
BUSINESS_NUMBER = "2025550100"
BUSINESS_WA_ID = BUSINESS_CC + BUSINESS_NUMBER
PHONE = "12025550123"
PASSWORD = "S3cure!pass"


async def login_and_register(dep: Deployment, api: Api, receiver: WebhookReceiver, sent_status: bool) -> None:
    """The quick start, as a user would do it: password change, registration, webhook."""
    basic = ("admin", "secret")
    status, body = await api.call("POST", "/v1/users/login", basic=basic)
    assert status == 401, body
    assert body["errors"][0]["code"] == 1024

    status, body = await api.call("POST", "/v1/users/login", {"new_password": PASSWORD}, basic=basic)
    assert status == 200, body
    api.token = body["users"][0]["token"]
    assert body["users"][0]["expires_after"]

    status, _ = await api.admin("POST", f"{dep.admin_url}/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    assert status in (200, 201)
    status, body = await api.admin(
        "POST",
        f"{dep.admin_url}/admin/certificates",
        {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "vname": "OpenPrem Test"},
    )
    assert status in (200, 201), body
    cert = body["cert"]

    register = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "method": "sms", "cert": cert}
    status, body = await api.call("POST", "/v1/account", register)
    assert status == 202, body
    assert body["account"][0]["vname"] == "OpenPrem Test"

    status, body = await api.admin("GET", f"{dep.admin_url}/admin/codes/{BUSINESS_WA_ID}")
    assert status == 200, body
    status, body = await api.call("POST", "/v1/account/verify", {"code": body["code"]})
    assert status in (200, 201), body

    async def connected() -> bool:
        _, health = await api.call("GET", "/v1/health")
        return bool(health.get("health", {}).get("gateway_status") == "connected")

    await wait_until(connected, 60, "gateway_status connected")

    patch: dict[str, Any] = {"webhooks": {"url": receiver.url}, "sent_status": sent_status}
    status, body = await api.call("PATCH", "/v1/settings/application", patch)
    assert status == 200, body
    status, body = await api.call("GET", "/v1/settings/application")
    assert body["settings"]["application"]["webhooks"]["url"] == receiver.url


async def inbox(api: Api, dep: Deployment, wa_id: str) -> list[dict[str, Any]]:
    status, body = await api.admin("GET", f"{dep.admin_url}/admin/phones/{wa_id}/inbox")
    assert status == 200, body
    return list(body["messages"])


@pytest.mark.parametrize("sent_status", [True])
async def test_text_both_ways(deployment: Deployment, sent_status: bool) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, deployment.web_url)
            await login_and_register(deployment, api, receiver, sent_status)

            status, body = await api.call(
                "POST", "/v1/messages", {"to": PHONE, "type": "text", "text": {"body": "Hello from OpenPrem"}}
            )
            assert status in (200, 201), body
            msg_id = body["messages"][0]["id"]

            async def delivered_to_phone() -> bool:
                return any(m["id"] == msg_id for m in await inbox(api, deployment, PHONE))

            await wait_until(delivered_to_phone, 30, "the phone to decrypt the message")
            received = [m for m in await inbox(api, deployment, PHONE) if m["id"] == msg_id]
            assert len(received) == 1
            assert received[0]["type"] == "text"
            assert received[0]["text"]["body"] == "Hello from OpenPrem"

            wanted = {"sent", "delivered", "read"} if sent_status else {"delivered", "read"}
            await receiver.wait_for(
                lambda: wanted <= {s["status"] for s in receiver.statuses() if s["id"] == msg_id},
                30,
                f"statuses {wanted}",
            )
            for s in receiver.statuses():
                assert s["recipient_id"] == PHONE
                assert s["timestamp"].isdigit()

            status, body = await api.admin(
                "POST",
                f"{deployment.admin_url}/admin/phones/{PHONE}/send",
                {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "Hi back"}},
            )
            assert status in (200, 201), body
            await receiver.wait_for(lambda: len(receiver.messages()) >= 1, 30, "the inbound message webhook")
            inbound_event = next(e for e in receiver.events if e.get("messages"))
            message = inbound_event["messages"][0]
            assert message["from"] == PHONE
            assert message["type"] == "text"
            assert message["text"]["body"] == "Hi back"
            assert message["timestamp"].isdigit()
            assert inbound_event["contacts"] == [{"profile": {"name": "Kerry Fisher"}, "wa_id": PHONE}]
    finally:
        await receiver.stop()


async def test_sigkill_coreapp_with_messages_in_flight(deployment_slow_receipts: Deployment) -> None:
    """200 messages accepted, coreapp SIGKILLed before they are through: after a restart, each reaches the
    phone exactly once and every status webhook arrives."""
    dep = deployment_slow_receipts
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, dep.web_url)
            await login_and_register(dep, api, receiver, sent_status=True)

            async def send(i: int) -> str:
                status, body = await api.call(
                    "POST", "/v1/messages", {"to": PHONE, "type": "text", "text": {"body": f"message {i}"}}
                )
                assert status in (200, 201), body
                return str(body["messages"][0]["id"])

            ids: list[str] = []
            for start in range(0, 200, 25):
                ids += await asyncio.gather(*(send(i) for i in range(start, start + 25)))
            assert len(set(ids)) == 200

            dep.core_proc.kill()
            read_at_kill = {s["id"] for s in receiver.statuses("read")}
            assert len(read_at_kill) < 200, "nothing was in flight: the test proves nothing"

            await dep.restart_core()

            async def all_on_phone() -> bool:
                return len({m["id"] for m in await inbox(api, dep, PHONE)} & set(ids)) == 200

            await wait_until(all_on_phone, 120, "all 200 messages on the phone")
            got = [m["id"] for m in await inbox(api, dep, PHONE)]
            assert sorted(got) == sorted(ids), "a message is missing or arrived twice"
            bodies = {m["text"]["body"] for m in await inbox(api, dep, PHONE)}
            assert bodies == {f"message {i}" for i in range(200)}

            for wanted in ("sent", "delivered", "read"):
                await receiver.wait_for(
                    lambda w=wanted: set(ids) <= {s["id"] for s in receiver.statuses(w)},
                    120,
                    f"a {wanted} webhook for every message",
                )
    finally:
        await receiver.stop()
