"""Issue 12 point 2: coreapp posts webhooks only to allowed addresses, checked at delivery on the address it connects
to (not only when webapp validated the setting), never follows a redirect, and webapp's check agrees.

Real CoreApp and ``WebhookDispatcher`` against real receivers on 127.0.0.1 / 127.0.0.2; nothing allow-listed means
a split deployment (``python -m coreapp``), which must refuse them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from sqlalchemy import select

from coreapp.storage.tables_webhooks import webhook_outbox
from coreapp.storage.webhooks import WebhookKind
from shared.config import DbSettings, FetchSettings
from shared.errors import ApiError, ErrorCode
from shared.netguard import AddressPolicy
from tests.coreapp.conftest import Core, CoreFactory, eventually
from tests.security.servers import Recorder
from webapp.schemas.settings import validate_application_patch

FAST = {"callback_backoff_delay_ms": 50, "max_callback_backoff_delay_ms": 100}


@pytest.fixture
async def receiver() -> AsyncIterator[Recorder]:
    server = await Recorder("127.0.0.1").start()

    async def ok(_request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    server.routes["/hook"] = ok
    try:
        yield server
    finally:
        await server.stop()


async def _loopback_name() -> str | None:
    """This machine's host name when it resolves to loopback only (a name, not ``localhost``: the resolver path)."""
    name = socket.gethostname()
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        return None
    loopback = infos and all(ipaddress.ip_address(str(info[4][0]).partition("%")[0]).is_loopback for info in infos)
    return name if loopback else None


async def _enqueue(core: Core, url: str) -> None:
    store = core.app.stores.webhooks
    await core.app.db.run("test.enqueue", lambda conn: store.enqueue_txn(conn, WebhookKind.STATUS_CHANGE, {"n": 1}))
    await core.rpc("settings.patch_application", {"application": {"webhooks": {"url": url}, **FAST}})


async def _last_error(core: Core, attempts: int) -> str:
    async def failed() -> str | None:
        async with core.app.db.engine.connect() as conn:
            row = (await conn.execute(select(webhook_outbox.c.attempts, webhook_outbox.c.last_error))).first()
        return row.last_error if row is not None and row.attempts >= attempts else None

    found: str = await eventually(failed)
    return found


async def test_private_webhook_target_is_never_posted(
    sqlite_db: DbSettings, make_core: CoreFactory, receiver: Recorder
) -> None:
    """The URL is set straight through the bus (as a compromised or older webapp could): coreapp itself refuses."""
    core = await make_core(sqlite_db, fetch=FetchSettings())
    await _enqueue(core, receiver.url("/hook"))
    assert "target not allowed" in await _last_error(core, attempts=2)

    name = await _loopback_name()
    urls = [f"http://[::ffff:127.0.0.1]:{receiver.port}/hook", f"http://localhost:{receiver.port}/hook"]
    urls += [f"http://{name}:{receiver.port}/hook"] if name else []
    for url in urls:
        await core.rpc("settings.patch_application", {"application": {"webhooks": {"url": url}}})
        before = await _attempts(core)
        error = await _last_error(core, attempts=before + 2)
        assert "target not allowed" in error and "loopback" in error, (url, error)
    log = (await core.rpc("webhooks.get_log", {"limit": 5}))["log"]
    assert log and all("target not allowed" in (entry["error"] or "") for entry in log)
    assert receiver.seen == []


async def _attempts(core: Core) -> int:
    async with core.app.db.engine.connect() as conn:
        return int(await conn.scalar(select(webhook_outbox.c.attempts)) or 0)


async def test_the_allow_list_lets_an_internal_receiver_through(
    sqlite_db: DbSettings, make_core: CoreFactory, receiver: Recorder
) -> None:
    core = await make_core(sqlite_db, fetch=FetchSettings(allow=("127.0.0.1/32",)))
    await _enqueue(core, receiver.url("/hook"))

    async def delivered() -> bool:
        return any(s.path == "/hook" for s in receiver.seen)

    await eventually(delivered)


async def test_redirects_are_not_followed(sqlite_db: DbSettings, make_core: CoreFactory, receiver: Recorder) -> None:
    """Both hosts allowed: the redirect is a failed attempt all the same, and its target hears nothing."""
    core = await make_core(sqlite_db, fetch=FetchSettings(allow=("127.0.0.1", "127.0.0.2")))
    receiver.redirect("/moved", receiver.url("/hook"), status=307)
    await _enqueue(core, receiver.url("/moved"))
    assert "HTTP 307" in await _last_error(core, attempts=2)
    assert {s.path for s in receiver.seen} == {"/moved"}


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[fd00::1]/hook",
        "https://localhost/hook",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
    ],
)
def test_webapp_refuses_what_coreapp_would(url: str) -> None:
    patch = {"webhooks": {"url": url}}
    for targets in (None, AddressPolicy()):
        with pytest.raises(ApiError) as info:
            validate_application_patch(patch, allow_http_loopback=True, targets=targets)
        assert info.value.code is ErrorCode.INVALID_PARAMETER


def test_webapp_admits_what_the_deployment_allows() -> None:
    def check(url: str, targets: AddressPolicy) -> None:
        validate_application_patch({"webhooks": {"url": url}}, allow_http_loopback=True, targets=targets)

    check("https://hooks.example.com/x", AddressPolicy())  # names: checked by coreapp on the resolved address
    check("https://10.0.0.1/hook", AddressPolicy.from_settings(FetchSettings(allow=("10.0.0.0/8",))))
    check("http://127.0.0.1:8080/hook", AddressPolicy(allow_loopback=True))  # the embedded default
