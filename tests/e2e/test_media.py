"""Media through the public API, separate processes, every backend: upload → send by id → the phone has the
same bytes; the phone sends an image → webhook with an id that ``GET /v1/media/{id}`` serves (webapp reads what
coreapp wrote on the shared media volume)."""

from __future__ import annotations

import base64
import hashlib

import aiohttp
import pytest

from tests.e2e.harness import Api, Deployment, WebhookReceiver, wait_until
from tests.e2e.test_walking_skeleton import BUSINESS_WA_ID, PHONE, inbox, login_and_register
from tests.support import media_samples as samples

pytestmark = pytest.mark.e2e


async def test_media_both_ways(deployment: Deployment) -> None:
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, deployment.web_url)
            await login_and_register(deployment, api, receiver, sent_status=False)
            auth = {"Authorization": f"Bearer {api.token}"}

            data = samples.png(extra=200_000)
            async with session.post(
                f"{api.base}/v1/media", data=data, headers={**auth, "Content-Type": "image/png"}, ssl=False
            ) as resp:
                body = await resp.json()
                assert resp.status == 201, body
            media_id = body["media"][0]["id"]

            send = {"to": PHONE, "type": "image", "image": {"id": media_id, "caption": "chart"}}
            status, body = await api.call("POST", "/v1/messages", send)
            assert status == 201, body
            msg_id = body["messages"][0]["id"]

            async def on_phone() -> bool:
                return any(m["id"] == msg_id for m in await inbox(api, deployment, PHONE))

            await wait_until(on_phone, 30, "the phone to download and decrypt the image")
            (got,) = [m for m in await inbox(api, deployment, PHONE) if m["id"] == msg_id]
            assert got["image"]["sha256"] == hashlib.sha256(data).hexdigest()
            assert got["image"]["caption"] == "chart"

            reply = samples.jpeg(30_000)
            image = {"data_b64": base64.b64encode(reply).decode(), "mime_type": "image/jpeg"}
            status, body = await api.admin(
                "POST",
                f"{deployment.admin_url}/admin/phones/{PHONE}/send",
                {"to": BUSINESS_WA_ID, "type": "image", "image": image},
            )
            assert status == 200, body
            await receiver.wait_for(lambda: len(receiver.messages()) >= 1, 30, "the inbound image webhook")
            message = receiver.messages()[0]
            assert message["type"] == "image"
            assert message["image"]["sha256"] == hashlib.sha256(reply).hexdigest()

            async with session.get(f"{api.base}/v1/media/{message['image']['id']}", headers=auth, ssl=False) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "image/jpeg"
                assert await resp.read() == reply
    finally:
        await receiver.stop()
