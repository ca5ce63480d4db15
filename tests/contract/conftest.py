"""A LIVE stack for contract tests: the real WebApp on a loopback HTTPS port and the real CoreApp in-process,
on one LocalBus and one SQLite database.  chatd is not started: coreapp stays unregistered, so what needs the
network answers 1011 (or, for registration, finds the chat port closed)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coreapp.app import CoreApp
from shared.bus.local import LocalBus
from shared.config import BusSettings, ChatSettings, DbEngine, DbSettings, PathSettings, Settings, WebSettings
from tests.webapp.conftest import ADMIN_PASSWORD, fast_hasher
from webapp.app import WebApp


def closed_port() -> int:
    """A loopback port nothing listens on (registration attempts are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Live:
    url: str
    ca_file: Path
    token: str
    core: CoreApp
    web: WebApp
    session: aiohttp.ClientSession

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def call(
        self, method: str, path: str, json: Any = None, *, token: str | None = None, auth: bool = True
    ) -> tuple[int, Any, Any]:
        headers = self.auth(token) if auth else {}
        async with self.session.request(method, self.url + path, json=json, headers=headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json(), resp.headers
            return resp.status, await resp.text(), resp.headers


def live_settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    web = WebSettings(host="127.0.0.1", server_name="webapp.test").model_copy(update={"port": 0})
    return Settings(
        db=DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "openprem.db"),
        web=web,
        paths=PathSettings(data_dir=data, media_dir=data / "media", log_dir=data / "log"),
        bus=BusSettings(rpc_timeout_s=5.0),
        chat=ChatSettings(host="127.0.0.1", port=closed_port(), fallback_port=closed_port(), connect_timeout_s=1.0),
    )


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    settings = live_settings(tmp_path)
    bus = LocalBus(default_timeout_s=settings.bus.rpc_timeout_s)
    core = CoreApp(settings, bus)
    await core.start()
    web = WebApp(settings, bus, password_hasher=fast_hasher())
    try:
        await web.start()
        ca_file = settings.paths.data_dir / "web" / "server.crt"
        ctx = ssl.create_default_context(cafile=str(ca_file))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            basic = {"Authorization": aiohttp.encode_basic_auth("admin", "secret")}
            async with session.post(
                web.url + "/v1/users/login", json={"new_password": ADMIN_PASSWORD}, headers=basic
            ) as resp:
                assert resp.status == 200, await resp.text()
                token = (await resp.json())["users"][0]["token"]
            yield Live(web.url, ca_file, token, core, web, session)
    finally:
        await web.stop()
        await core.stop()
