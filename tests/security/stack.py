"""The whole product in one process for the security tests: the real WebApp (HTTPS on loopback) and CoreApp on
one ``LocalBus`` and one database (each backend), registered against an in-process chatd.  Either app can be
stopped and started again on the same database, as a crash-and-restart of that process would."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from coreapp.app import CoreApp
from shared.bus.local import LocalBus
from shared.config import BusSettings, DbEngine, DbSettings, PathSettings, Settings, WebSettings
from tests.coreapp.conftest import PHONE, Core, Sandbox, core_settings, eventually, register
from tests.webapp.conftest import ADMIN_PASSWORD, fast_hasher
from webapp.app import WebApp


@dataclass
class Stack:
    settings: Settings
    sandbox: Sandbox
    bus: LocalBus
    core: CoreApp
    web: WebApp
    session: aiohttp.ClientSession
    token: str = ""

    async def call(
        self, method: str, path: str, *, json: Any = None, data: bytes | None = None, headers: Any = None
    ) -> tuple[int, Any]:
        """One ``/v1`` call as the admin; ``headers`` may be a ``CIMultiDict`` (a header sent twice)."""
        sent = CIMultiDict(headers or {})
        sent["Authorization"] = f"Bearer {self.token}"
        async with self.session.request(method, self.web.url + path, json=json, data=data, headers=sent) as resp:
            return resp.status, await resp.json(content_type=None)

    async def send(self, body: dict[str, Any], key: str | None) -> tuple[int, Any]:
        return await self.call("POST", "/v1/messages", json=body, headers={"Idempotency-Key": key} if key else None)

    async def upload(self, data: bytes, content_type: str, key: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": content_type} | ({"Idempotency-Key": key} if key else {})
        return await self.call("POST", "/v1/media", data=data, headers=headers)

    async def inbox(self, body: str) -> list[dict[str, Any]]:
        """What the phone decrypted with this text."""
        messages = (await self.sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return [m for m in messages if (m.get("text") or {}).get("body") == body]

    async def restart_core(self) -> None:
        """Stop coreapp and start a new one on the same database and bus; wait until it is connected again."""
        await self.core.stop()
        self.core = CoreApp(self.settings, self.bus)
        await self.core.start()

        async def connected() -> bool:
            return (await self.bus.request("health.get", {}))["gateway_status"] == "connected"

        await eventually(connected, 30)

    async def restart_web(self) -> None:
        await self.web.stop()
        self.web = WebApp(self.settings, self.bus, password_hasher=fast_hasher())
        await self.web.start()


def stack_settings(db: DbSettings, sandbox: Sandbox, tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    core = core_settings(db, sandbox)
    web = WebSettings(host="127.0.0.1", server_name="webapp.test").model_copy(update={"port": 0})
    return core.model_copy(
        update={
            "web": web,
            "paths": PathSettings(data_dir=data, media_dir=data / "media", log_dir=data / "log"),
            "bus": BusSettings(rpc_timeout_s=30.0),
        }
    )


StackFactory = Callable[[DbSettings], Awaitable[Stack]]


@pytest.fixture
async def make_stack(sandbox: Sandbox, tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Builds the registered stack on a database; everything it started is stopped after the test."""
    stacks: list[Stack] = []

    async def factory(db: DbSettings) -> Stack:
        settings = stack_settings(db, sandbox, tmp_path)
        await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
        bus = LocalBus(default_timeout_s=settings.bus.rpc_timeout_s)
        core = CoreApp(settings, bus)
        await core.start()
        web = WebApp(settings, bus, password_hasher=fast_hasher())
        try:
            await web.start()
        except BaseException:
            await core.stop()
            raise
        ctx = ssl.create_default_context(cafile=str(settings.paths.data_dir / "web" / "server.crt"))
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
        stack = Stack(settings, sandbox, bus, core, web, session)
        stacks.append(stack)
        await register(Core(core, bus, settings), sandbox)
        basic = {"Authorization": aiohttp.encode_basic_auth("admin", "secret")}
        async with session.post(web.url + "/v1/users/login", json={"new_password": ADMIN_PASSWORD}, headers=basic) as r:
            assert r.status == 200, await r.text()
            stack.token = (await r.json())["users"][0]["token"]
        return stack

    try:
        yield factory
    finally:
        for stack in stacks:
            await stack.session.close()
            await stack.web.stop()
            await stack.core.stop()


@pytest.fixture
async def stack(backend: DbSettings, make_stack: StackFactory) -> Stack:
    return await make_stack(backend)


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> DbSettings:
    """For what no backend changes (header checks): SQLite only."""
    return DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "openprem.db")
