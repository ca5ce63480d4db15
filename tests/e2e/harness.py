"""End-to-end harness: chatd, coreapp and webapp as real OS processes on loopback.

A ``Deployment`` starts the processes with environment variables only (exactly as a container would get
them), waits until each answers, and can SIGKILL and restart any of them.  The embedded variant runs
``python -m openprem run --no-sandbox`` (webapp + coreapp in one process on SQLite and the in-process bus)
beside a separate chatd process.  Every process writes its output to a log file under the test's directory,
printed when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shared.config import DbSettings
from tests.support.ports import free_port
from tests.support.services import db_env

PYTHON = sys.executable


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        log.write(f"\n===== start {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
            start_new_session=True,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as in a crash."""
        if self.popen and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if not self.popen:
            return None
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def alive(self) -> bool:
        return bool(self.popen and self.popen.poll() is None)

    def tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class WebhookReceiver:
    """A real HTTP server on loopback that records every webhook body and answers 200."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() of each event, in order
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        self.arrived.append(time.monotonic())
        self._changed.set()
        return web.Response(status=200)

    def statuses(self, status: str | None = None) -> list[dict[str, Any]]:
        found = [s for e in self.events for s in e.get("statuses", [])]
        return [s for s in found if status is None or s["status"] == status]

    def first_seen(self, message_id: str, status: str) -> float:
        """When the first ``status`` webhook of ``message_id`` arrived (``time.monotonic()``; inf: never)."""
        for event, at in zip(self.events, self.arrived, strict=True):
            if any(s["id"] == message_id and s["status"] == status for s in event.get("statuses", [])):
                return at
        return float("inf")

    def messages(self) -> list[dict[str, Any]]:
        return [m for e in self.events for m in e.get("messages", [])]

    async def wait_for(self, predicate: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; got {len(self.events)} events")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))


@dataclass
class Deployment:
    """One OpenPrem install: chatd + (webapp, coreapp) processes, and clients for both APIs."""

    workdir: Path
    db: DbSettings
    mqtt_port: int | None  # None: embedded (in-process bus, webapp and coreapp in one process)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)
    mqtt_users: Mapping[str, str] = field(default_factory=dict)
    """Broker identity -> password (``PrivateMosquitto.users``): webapp and coreapp connect as their own, as in
    compose; empty: an anonymous broker."""

    def __post_init__(self) -> None:
        self.web_port = free_port()
        self.chat_port = free_port()
        self.chat_fallback_port = free_port()
        self.admin_port = free_port()
        self.media_port = free_port()
        self.chatd_dir = self.workdir / "chatd"
        self.instance = f"e2e{os.getpid()}x{self.web_port}"

    # --- environment ------------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
        env.update(
            PYTHONUNBUFFERED="1",
            WA_LOG_LEVEL="INFO",
            WA_DATA_DIR=str(self.workdir / "data"),
            WA_MEDIA_DIR=str(self.workdir / "media"),
            WA_LOG_DIR=str(self.workdir / "log"),
        )
        return env

    def chatd_env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(
            WA_SANDBOX_HOSTNAME="127.0.0.1",
            WA_SANDBOX_PORT=str(self.chat_port),
            WA_SANDBOX_FALLBACK_PORT=str(self.chat_fallback_port),
            WA_SANDBOX_ADMIN_HOSTNAME="127.0.0.1",
            WA_SANDBOX_ADMIN_PORT=str(self.admin_port),
            WA_SANDBOX_MEDIA_PORT=str(self.media_port),
            WA_SANDBOX_DATA_DIR=str(self.chatd_dir),
            WA_SANDBOX_RECEIPT_DELAY="0.05",
            WA_SANDBOX_READ_DELAY="0.1",
        )
        env.update({k: v for k, v in self.extra_env.items() if k.startswith("WA_SANDBOX_")})
        return env

    def app_env(self, role: str | None = None) -> dict[str, str]:
        """The environment of webapp or coreapp (``role``: its broker identity), or of the embedded process."""
        env = self._base_env()
        env.update(db_env(self.db))
        env.update(
            WA_CHAT_HOSTNAME="127.0.0.1",
            WA_CHAT_PORT=str(self.chat_port),
            WA_CHAT_FALLBACK_PORT=str(self.chat_fallback_port),
            WA_CHAT_MEDIA_PORT=str(self.media_port),
            WA_CHAT_CA_FILE=str(self.chatd_dir / "ca.pem"),
            WA_CHAT_PING_INTERVAL="5",
            WA_WEB_HOSTNAME="127.0.0.1",
            WA_WEB_PORT=str(self.web_port),
            WA_WEBHOOK_ALLOW_HTTP_LOOPBACK="1",
            WA_FETCH_ALLOW_LOOPBACK="1",  # the receivers are on loopback; a split deployment refuses it otherwise
            WA_BUS_INSTANCE=self.instance,
        )
        if self.mqtt_port is not None:
            env.update(WA_BUS="MQTT", WA_MQTT_HOSTNAME="127.0.0.1", WA_MQTT_PORT=str(self.mqtt_port))
            if role is not None and role in self.mqtt_users:
                env.update(WA_MQTT_USERNAME=role, WA_MQTT_PASSWORD=self.mqtt_users[role])
        env.update({k: v for k, v in self.extra_env.items() if not k.startswith("WA_SANDBOX_")})
        return env

    # --- processes --------------------------------------------------------------------------------------

    def _proc(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        proc = self.procs.get(name) or Proc(name, argv, env, self.workdir / f"{name}.out")
        self.procs[name] = proc
        return proc

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc("chatd", [PYTHON, "-m", "chatd"], self.chatd_env()).start()
        await self.wait_http(f"http://127.0.0.1:{self.admin_port}/admin/health", "chatd")
        if self.mqtt_port is None:
            argv = [PYTHON, "-m", "openprem", "run", "--no-sandbox", "--no-quickstart"]
            self._proc("embedded", argv, self.app_env()).start()
        else:
            self._proc("coreapp", [PYTHON, "-m", "coreapp"], self.app_env("coreapp")).start()
            self._proc("webapp", [PYTHON, "-m", "webapp"], self.app_env("webapp")).start()
        await self.wait_http(f"{self.web_url}/v1/health", "webapp", ok_statuses=(200, 401))

    @property
    def core_proc(self) -> Proc:
        """The process holding coreapp (the embedded one also holds webapp)."""
        return self.procs["embedded" if self.mqtt_port is None else "coreapp"]

    async def restart_core(self) -> None:
        self.core_proc.start()
        await self.wait_http(f"{self.web_url}/v1/health", "webapp", ok_statuses=(200, 401))

    async def stop(self) -> None:
        for name in ("webapp", "coreapp", "embedded", "chatd"):
            if name in self.procs:
                self.procs[name].stop()

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} -----\n{p.tail()}" for p in self.procs.values())

    async def wait_http(
        self, url: str, what: str, ok_statuses: tuple[int, ...] = (200,), timeout_s: float = 60
    ) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                for proc in self.procs.values():
                    if proc.popen and proc.popen.poll() is not None and proc.name in url + what:
                        raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}\n{proc.tail()}")
                try:
                    async with session.get(url, ssl=False) as resp:
                        if resp.status in ok_statuses:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what} did not come up at {url}\n{self.logs()}")
                await asyncio.sleep(0.2)

    # --- API clients ------------------------------------------------------------------------------------

    @property
    def web_url(self) -> str:
        return f"https://127.0.0.1:{self.web_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


class Api:
    """A thin /v1 client that keeps the bearer token."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.token: str | None = None

    async def call(
        self, method: str, path: str, body: Any = None, basic: tuple[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One /v1 call: HTTP Basic when ``basic`` is given (login), else the bearer token if any."""
        headers = {}
        if basic is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(*basic)
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with self.session.request(method, self.base + path, json=body, headers=headers, ssl=False) as resp:
            return resp.status, await resp.json(content_type=None)

    async def admin(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        async with self.session.request(method, path, json=body) as resp:
            return resp.status, await resp.json(content_type=None)


async def wait_until(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval_s)
