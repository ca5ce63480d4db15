"""Fixtures and helpers for the attack tests: the coreapp ones (an in-process chatd, a real CoreApp), the whole
product in one process (``tests.security.stack``), the e2e deployment of OS processes, the webhook ones (outbox
tables, a loopback receiver), the live stack of tests/contract and the webapp ones (a fake coreapp behind
LocalBus); a real argon2 hasher that measures how many of its computations overlap, and samplers for latency
and memory while an attack runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher

from shared.bus.local import LocalBus
from shared.config import DbSettings
from tests.contract.conftest import live
from tests.coreapp.conftest import make_core, sandbox, sqlite_db
from tests.coreapp_webhooks.conftest import db, receiver, settings_store, store
from tests.e2e.conftest import deployment, mqtt_broker, pytest_runtest_makereport
from tests.security.stack import make_stack, sqlite_backend, stack
from tests.support.bus import json_handler
from tests.webapp.conftest import (
    Api,
    FakeCore,
    admin,
    api,
    app_db,
    core,
    fast_hasher,
    fetch_options,
    make_settings,
    web_options,
    webapp,
)
from webapp.app import WebApp

__all__ = [
    "admin",
    "api",
    "app_db",
    "core",
    "db",
    "deployment",
    "fetch_options",
    "live",
    "make_core",
    "make_stack",
    "mqtt_broker",
    "pytest_runtest_makereport",
    "receiver",
    "sandbox",
    "settings_store",
    "sqlite_backend",
    "sqlite_db",
    "stack",
    "store",
    "web_options",
    "webapp",
]

MiB = 1024 * 1024


class MeasuredHasher(PasswordHasher):
    """The real argon2 hasher, counting in its worker threads how many computations run at once."""

    def __init__(self, **parameters: Any) -> None:
        super().__init__(**parameters)
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls = 0

    @contextlib.contextmanager
    def _measured(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
            self.calls += 1
            self.peak = max(self.peak, self.running)
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._measured():
            return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        with self._measured():
            return super().verify(hash, password)


def fast_measured_hasher() -> MeasuredHasher:
    fast = fast_hasher()
    return MeasuredHasher(time_cost=fast.time_cost, memory_cost=fast.memory_cost, parallelism=fast.parallelism)


@contextlib.asynccontextmanager
async def running_webapp(
    db: DbSettings, data_dir: Path, hasher: PasswordHasher | None = None, **web: Any
) -> AsyncIterator[tuple[WebApp, Api]]:
    """A WebApp on a loopback HTTPS port (fake coreapp behind a LocalBus) and a client trusting its certificate."""
    bus = LocalBus(default_timeout_s=1.0)
    bus.serve(json_handler(FakeCore().handle))
    await bus.start()
    app = WebApp(make_settings(db, data_dir, **web), bus, password_hasher=hasher or fast_measured_hasher())
    await app.start()
    try:
        ctx = ssl.create_default_context(cafile=str(data_dir / "web" / "server.crt"))
        connector = aiohttp.TCPConnector(ssl=ctx, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield app, Api(session, app.url)
    finally:
        await app.stop()
        await bus.stop()


async def login_token(api: Api, username: str, password: str, new_password: str | None = None) -> str:
    status, body, _ = await api.login(username, password, new_password=new_password)
    assert status == 200, body
    return str(body["users"][0]["token"])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class HealthProbe:
    """``GET /v1/health`` in a loop while an attack runs: how long an honest client waits."""

    api: Api
    token: str
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            status, _, _ = await self.api.call("GET", "/v1/health", token=self.token)
            self.latencies.append(time.perf_counter() - started)
            self.statuses.append(status)
            await asyncio.sleep(0.01)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)


def rss_bytes() -> int:
    """Resident memory of this process (the WebApp runs in it) from ``/proc/self/statm``."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class RssProbe:
    """The highest resident memory seen, sampled every 5 ms."""

    baseline: int = field(default_factory=rss_bytes)
    peak: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(0.005)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)


@contextlib.asynccontextmanager
async def probing(*probes: HealthProbe | RssProbe) -> AsyncIterator[None]:
    """Run the probes for the duration of the block."""
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(probe.run(stop)) for probe in probes]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)
