"""The lost answer, between real processes: coreapp stores a keyed send, the webapp that asked dies before anyone
reads the answer, and the client's retry through a new webapp gets the same id; the phone decrypts the message once.

On MQTT (MariaDB, PostgreSQL) the order is forced, not raced: coreapp is frozen (SIGSTOP), the request is seen on
the bus, the webapp is SIGKILLed, and only then does coreapp go on (SIGCONT), store the message and answer a
webapp that no longer exists.  Embedded (SQLite: webapp and coreapp are one process) the process is SIGKILLed as
soon as the key's row is in the database; whatever it wrote back, the client never reads it.  Both then restart
and retry, and a coreapp SIGKILL + restart after that changes nothing either (keys live in the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import uuid
from typing import Any

import aiohttp
import aiomqtt
import pytest
from sqlalchemy import select

from coreapp.storage.tables_idempotency import message_idempotency
from shared.db.engine import Database
from tests.e2e.harness import Api, Deployment, WebhookReceiver, wait_until
from tests.e2e.test_walking_skeleton import PHONE, inbox, login_and_register

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


async def stored_id(db: Database, key: str) -> str | None:
    """The message id coreapp stored with ``key`` (``None`` until that transaction committed)."""
    digest = hashlib.sha256(key.encode()).hexdigest()

    async def find(conn: Any) -> str | None:
        found = await conn.scalar(
            select(message_idempotency.c.message_id).where(message_idempotency.c.key_sha256 == digest)
        )
        return None if found is None else str(found)

    return await db.run("test.find_key", find)


async def post_keyed(api: Api, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {api.token}", "Idempotency-Key": key}
    async with api.session.post(api.base + "/v1/messages", json=body, headers=headers, ssl=False) as resp:
        return resp.status, await resp.json(content_type=None)


def signal_group(dep: Deployment, name: str, sig: signal.Signals) -> None:
    popen = dep.procs[name].popen
    assert popen is not None and popen.poll() is None, f"{name} is not running"
    os.killpg(popen.pid, sig)


async def lose_the_answer_on_mqtt(dep: Deployment, api: Api, body: dict[str, Any], key: str) -> None:
    """coreapp frozen → request on the bus → webapp SIGKILLed → coreapp resumes and answers nobody."""
    assert dep.mqtt_port is not None
    # The broker is authenticated (the shipped ACL): only coreapp's identity may read requests.
    login = {"username": "coreapp", "password": dep.mqtt_users["coreapp"]} if "coreapp" in dep.mqtt_users else {}
    spy_id = f"spy-{uuid.uuid4().hex[:8]}"
    async with aiomqtt.Client("127.0.0.1", dep.mqtt_port, identifier=spy_id, **login) as spy:
        await spy.subscribe(f"openprem/{dep.instance}/rpc/req", qos=1)
        signal_group(dep, "coreapp", signal.SIGSTOP)
        try:
            attempt = asyncio.ensure_future(post_keyed(api, body, key))
            async with asyncio.timeout(20):
                async for message in spy.messages:
                    if isinstance(message.payload, bytes) and key.encode() in message.payload:
                        break
            dep.procs["webapp"].kill()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                answer = await asyncio.wait_for(attempt, 10)
                raise AssertionError(f"the client got an answer from a webapp killed before coreapp ran: {answer}")
        finally:
            signal_group(dep, "coreapp", signal.SIGCONT)


async def lose_the_answer_embedded(dep: Deployment, db: Database, api: Api, body: dict[str, Any], key: str) -> None:
    """The request in flight; the process SIGKILLed the moment the key's row is committed."""
    attempt = asyncio.ensure_future(post_keyed(api, body, key))
    await wait_until(lambda: stored_id(db, key), 20, "the key's row", interval_s=0.005)
    dep.core_proc.kill()
    attempt.cancel()  # the client abandons the request: whatever was written back is never read
    with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
        await attempt


async def test_a_retry_after_the_webapp_died_with_the_answer_gets_the_same_id(deployment: Deployment) -> None:
    dep = deployment
    receiver = WebhookReceiver()
    await receiver.start()
    db = await Database.connect(dep.db)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, dep.web_url)
            await login_and_register(dep, api, receiver, sent_status=True)
            key, text = f"lost-{uuid.uuid4()}", f"lost answer {uuid.uuid4()}"
            body = {"to": PHONE, "type": "text", "text": {"body": text}}

            if dep.mqtt_port is None:
                await lose_the_answer_embedded(dep, db, api, body, key)
                dep.core_proc.start()
            else:
                await lose_the_answer_on_mqtt(dep, api, body, key)
                await wait_until(lambda: stored_id(db, key), 30, "coreapp to store the frozen request")
                dep.procs["webapp"].start()
            await dep.wait_http(f"{dep.web_url}/v1/health", "webapp", ok_statuses=(200, 401))
            message_id = await stored_id(db, key)
            assert message_id is not None

            status, doc = await post_keyed(api, body, key)
            assert (status, doc["messages"][0]["id"]) == (201, message_id), doc

            dep.core_proc.kill()  # and the key outlives a coreapp crash too
            await dep.restart_core()
            status, doc = await post_keyed(api, body, key)
            assert (status, doc["messages"][0]["id"]) == (201, message_id), doc
            status, doc = await post_keyed(api, {**body, "text": {"body": text + "!"}}, key)
            assert (status, doc["errors"][0]["code"]) == (409, 1004), doc

            await receiver.wait_for(
                lambda: any(s["id"] == message_id for s in receiver.statuses("read")), 60, "the message read"
            )
            await asyncio.sleep(1.0)  # a second copy would be right behind the first
            received = [m for m in await inbox(api, dep, PHONE) if m["text"]["body"] == text]
            assert [m["id"] for m in received] == [message_id]
    finally:
        await db.close()
        await receiver.stop()
