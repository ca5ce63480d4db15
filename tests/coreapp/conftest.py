"""coreapp against a real in-process chatd (TLS on free loopback ports) and a real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatd.app import Chatd
from coreapp.app import CoreApp
from shared.bus.local import LocalBus
from shared.config import ChatSettings, DbEngine, DbSettings, FetchSettings, PathSettings, SandboxSettings, Settings
from tests.support.ports import free_port

BUSINESS_CC = "1"
BUSINESS_NUMBER = "6315551000"
BUSINESS_WA_ID = BUSINESS_CC + BUSINESS_NUMBER
PHONE = "12025550199"


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 15.0, interval_s: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last value {value!r})")
        await asyncio.sleep(interval_s)


@dataclass
class Sandbox:
    chatd: Chatd
    settings: SandboxSettings
    http: aiohttp.ClientSession

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"http://127.0.0.1:{self.settings.admin_port}{path}"
        async with self.http.request(method, url, json=body) as resp:
            data = await resp.json()
            if resp.status >= 400:
                raise AssertionError(f"{method} {path}: {resp.status} {data}")
            return data


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    settings = SandboxSettings(
        host="127.0.0.1",
        port=free_port(),
        fallback_port=free_port(),
        admin_port=free_port(),
        media_port=free_port(),
        data_dir=tmp_path / "chatd",
        receipt_delay_s=0.05,
        read_delay_s=0.1,
    )
    chatd = Chatd(settings)
    await chatd.start()
    async with aiohttp.ClientSession() as http:
        try:
            yield Sandbox(chatd, settings, http)
        finally:
            await chatd.stop()


@dataclass
class Core:
    app: CoreApp
    bus: LocalBus
    settings: Settings
    started: bool = False
    extra: list[CoreApp] = field(default_factory=list)

    async def rpc(self, method: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.bus.request(method, payload or {})

    async def health(self) -> str:
        return str((await self.rpc("health.get"))["gateway_status"])


def core_settings(
    db: DbSettings,
    sandbox: Sandbox,
    *,
    port: int | None = None,
    fallback: int | None = None,
    fetch: FetchSettings | None = None,
) -> Settings:
    chat = ChatSettings(
        host="127.0.0.1",
        port=port or sandbox.settings.port,
        fallback_port=fallback or sandbox.settings.fallback_port,
        ca_file=sandbox.chatd.ca_file,
        connect_timeout_s=2.0,
        ping_interval_s=5.0,
        offline_drain_timeout_s=5.0,
    )
    root = sandbox.settings.data_dir.parent  # the test's tmp_path: the key-store key file stays out of var/
    # The tests' webhook receivers and file servers are on loopback: allowed as in the embedded default.
    fetch = fetch or FetchSettings(allow_loopback=True)
    paths = PathSettings(data_dir=root / "data", media_dir=root / "media")
    return Settings(db=db, chat=chat, paths=paths, fetch=fetch)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> DbSettings:
    return DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "core.db")


CoreFactory = Callable[..., Awaitable[Core]]


@pytest.fixture
async def make_core(sandbox: Sandbox) -> AsyncIterator[CoreFactory]:
    cores: list[Core] = []

    async def factory(db: DbSettings, **kwargs: Any) -> Core:
        settings = core_settings(db, sandbox, **kwargs)
        bus = LocalBus(default_timeout_s=30.0)
        core = Core(CoreApp(settings, bus), bus, settings)
        await core.app.start()
        cores.append(core)
        return core

    try:
        yield factory
    finally:
        for core in reversed(cores):
            await core.app.stop()


async def register(core: Core, sandbox: Sandbox, cc: str = BUSINESS_CC, number: str = BUSINESS_NUMBER) -> None:
    """account.register + account.verify against chatd, then wait until connected."""
    cert = (await sandbox.admin("POST", "/admin/certificates", {"cc": cc, "phone_number": number, "vname": "Acme"}))[
        "cert"
    ]
    reply = await core.rpc("account.register", {"cc": cc, "phone_number": number, "method": "sms", "cert": cert})
    assert reply == {"status": "code_sent", "vname": "Acme"}
    code = (await sandbox.admin("GET", f"/admin/codes/{cc}{number}"))["code"]
    assert await core.rpc("account.verify", {"code": code}) == {}

    async def connected() -> bool:
        return await core.health() == "connected"

    await eventually(connected)
