"""A real WebApp on a loopback HTTPS socket and a real database; coreapp is a fake behind a LocalBus (the RPC seam)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher

from shared.appsettings import ApplicationSettings, merge
from shared.bus.local import LocalBus
from shared.config import BusSettings, DbSettings, FetchSettings, PathSettings, Settings, WebSettings
from shared.errors import ApiError, ErrorCode
from tests.support.bus import json_handler
from webapp.app import WebApp

ADMIN_PASSWORD = "N3w-Secret!"
VERSION = "2.41.2"


class FakeCore:
    """Answers the contracts §3 methods from memory; tests inject errors or silence per method."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: dict[str, ApiError] = {}
        self.silent: set[str] = set()
        self.gateway_status = "connected"
        self.application: dict[str, Any] = ApplicationSettings().model_dump(mode="json")
        self.sent = 0

    async def handle(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, payload))
        if method in self.silent:
            await asyncio.sleep(3600)
        if method in self.errors:
            raise self.errors[method]
        if method == "health.get":
            return {"gateway_status": self.gateway_status}
        if method == "account.register":
            if payload["phone_number"] == "5550001":
                return {"status": "registered"}
            return {"status": "code_sent", "vname": "Acme"}
        if method == "account.verify":
            if payload["code"] != "123456":
                raise ApiError(ErrorCode.ACCESS_DENIED, "wrong code")
            return {}
        if method == "settings.get_application":
            return {"application": self.application}
        if method == "settings.patch_application":
            self.application = merge(self.application, payload["application"])
            return {"application": self.application}
        if method == "settings.reset_application":
            self.application = ApplicationSettings().model_dump(mode="json")
            return {"application": self.application}
        if method == "messages.send":
            self.sent += 1
            return {"id": f"gBEGkYiEB1VXAglK1ZEqA{self.sent:06d}"}
        raise ApiError(ErrorCode.NOT_FOUND, f"no such method {method}")

    def last(self, method: str) -> dict[str, Any]:
        return [payload for name, payload in self.calls if name == method][-1]


class Api:
    """A thin HTTPS client: ``(status, json body, headers)`` per call."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token: str | None = None

    async def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        data: bytes | str | None = None,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        hdrs = dict(headers or {})
        bearer = token if token is not None else self.token
        if basic is not None:
            hdrs["Authorization"] = aiohttp.encode_basic_auth(*basic)
        elif bearer and "Authorization" not in hdrs:
            hdrs["Authorization"] = f"Bearer {bearer}"
        async with self.session.request(method, self.base + path, json=json, data=data, headers=hdrs) as resp:
            body = await resp.json(content_type=None) if resp.content_type == "application/json" else await resp.text()
            return resp.status, body, resp.headers

    async def login(self, username: str = "admin", password: str = ADMIN_PASSWORD, new_password: str | None = None):
        body = {"new_password": new_password} if new_password is not None else None
        return await self.call("POST", "/v1/users/login", body, basic=(username, password), token="")


def fast_hasher() -> PasswordHasher:
    # Production parameters take ~100 ms a hash; the tests exercise the flow, not the cost.
    return PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def make_settings(db: DbSettings, data_dir: Path, fetch: FetchSettings | None = None, **web: Any) -> Settings:
    web_settings = WebSettings(host="127.0.0.1", server_name="webapp.test", **web).model_copy(update={"port": 0})
    return Settings(
        db=db,
        web=web_settings,
        fetch=fetch or FetchSettings(),
        paths=PathSettings(data_dir=data_dir, media_dir=data_dir / "media", log_dir=data_dir / "log"),
        bus=BusSettings(rpc_timeout_s=1.0),
    )


@pytest.fixture
def app_db(backend: DbSettings) -> DbSettings:
    """The database under test; modules that only test validation override this with SQLite."""
    return backend


@pytest.fixture
def web_options() -> dict[str, Any]:
    """Extra ``WebSettings`` fields; override per module or test."""
    return {}


@pytest.fixture
def fetch_options() -> dict[str, Any]:
    """``FetchSettings`` fields (``WA_FETCH_*``); override per module or test."""
    return {}


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
async def webapp(
    app_db: DbSettings, tmp_path: Path, core: FakeCore, web_options: dict[str, Any], fetch_options: dict[str, Any]
) -> AsyncIterator[WebApp]:
    bus = LocalBus(default_timeout_s=1.0)
    bus.serve(json_handler(core.handle))
    await bus.start()
    settings = make_settings(app_db, tmp_path / "data", FetchSettings(**fetch_options), **web_options)
    app = WebApp(settings, bus, password_hasher=fast_hasher())
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
        await bus.stop()


@pytest.fixture
async def api(webapp: WebApp, tmp_path: Path) -> AsyncIterator[Api]:
    """A client that trusts the webapp's generated certificate (so the TLS setup is tested too)."""
    ctx = ssl.create_default_context(cafile=str(tmp_path / "data" / "web" / "server.crt"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        yield Api(session, webapp.url)


@pytest.fixture
async def admin(api: Api) -> Api:
    """``api`` logged in as admin (first login done, password changed to ``ADMIN_PASSWORD``)."""
    status, body, _ = await api.login(password="secret", new_password=ADMIN_PASSWORD)
    assert status == 200, body
    api.token = body["users"][0]["token"]
    return api
