"""The webhook CA (``certificates.*_webhooks_ca``) as CoreApp wires it: a private-CA receiver is reached only once
its CA is uploaded."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import trustme
from aiohttp import web
from sqlalchemy import select

from coreapp.storage.tables_webhooks import webhook_outbox
from coreapp.storage.webhooks import WebhookKind
from shared.config import DbSettings
from shared.errors import ApiError
from tests.coreapp.conftest import CoreFactory, eventually, free_port


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def receiver(ca: trustme.CA) -> AsyncIterator[tuple[str, list[Any]]]:
    """An HTTPS webhook server whose certificate chains to ``ca`` (not to any system root)."""
    got: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(orjson.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        yield f"https://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


async def test_deliveries_need_the_uploaded_ca(
    backend: DbSettings, make_core: CoreFactory, ca: trustme.CA, receiver: tuple[str, list[Any]]
) -> None:
    url, got = receiver
    core = await make_core(backend)
    store = core.app.stores.webhooks
    await core.app.db.run("test.enqueue", lambda conn: store.enqueue_txn(conn, WebhookKind.STATUS_CHANGE, {"n": 1}))
    fast = {"callback_backoff_delay_ms": 50, "max_callback_backoff_delay_ms": 100}
    await core.rpc("settings.patch_application", {"application": {"webhooks": {"url": url}, **fast}})

    async def failed_twice() -> bool:
        async with core.app.db.engine.connect() as conn:
            row = (await conn.execute(select(webhook_outbox.c.attempts, webhook_outbox.c.last_error))).first()
        return row is not None and row.attempts >= 2 and "Certificate" in (row.last_error or "")

    await eventually(failed_twice)
    assert got == []
    assert (await core.rpc("certificates.get_webhooks_ca"))["pem"] is None

    for bad in ("", "not a certificate", ca.private_key_pem.bytes().decode()):
        with pytest.raises(ApiError) as info:
            await core.rpc("certificates.set_webhooks_ca", {"pem": bad})
        assert info.value.code.code in (1008, 1009)

    pem = ca.cert_pem.bytes().decode()
    await core.rpc("certificates.set_webhooks_ca", {"pem": pem})
    assert (await core.rpc("certificates.get_webhooks_ca"))["pem"].strip() == pem.strip()

    async def arrived() -> bool:
        return got == [{"n": 1}]

    await eventually(arrived)
    assert await core.rpc("certificates.delete_webhooks_ca") == {"deleted": True}
    assert (await core.rpc("certificates.get_webhooks_ca"))["pem"] is None
    assert await core.rpc("certificates.delete_webhooks_ca") == {"deleted": False}
