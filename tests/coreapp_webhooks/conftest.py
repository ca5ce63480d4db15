"""Fixtures: a fresh database with the outbox and settings tables, and a real aiohttp webhook receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from coreapp.storage import tables_settings, tables_webhooks
from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from shared.config import DbSettings
from shared.db.engine import Database
from shared.ids import EventId
from shared.netguard import AddressPolicy

LOOPBACK = AddressPolicy(allow_loopback=True)
"""The receivers here listen on 127.0.0.1: allowed as in the embedded default (``WA_FETCH_ALLOW_LOOPBACK``)."""


async def create_tables(db: Database) -> None:
    """The migrations belong to the coreapp engineer; these tests build the same tables from the Core schema."""
    async with db.engine.begin() as conn:
        await conn.run_sync(tables_webhooks.metadata.create_all)
        await conn.run_sync(tables_settings.metadata.create_all)


@pytest.fixture
async def db(backend: DbSettings) -> AsyncIterator[Database]:
    database = await Database.connect(backend)
    await create_tables(database)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def store(db: Database) -> WebhookStore:
    return WebhookStore(db)


@pytest.fixture
def settings_store(db: Database) -> SettingsStore:
    return SettingsStore(db)


async def enqueue(db: Database, store: WebhookStore, n: int, kind: WebhookKind = WebhookKind.STATUS_CHANGE) -> EventId:
    """Commit one outbox row whose body carries ``n`` (so order can be checked on arrival)."""
    return await db.run("test.enqueue", lambda conn: store.enqueue_txn(conn, kind, {"n": n}))


async def wait_until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@dataclass
class Request:
    at: float
    event_id: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int


@dataclass
class Receiver:
    """A webhook endpoint on a loopback port: records every request, answers from ``script`` then 200."""

    script: list[int] = field(default_factory=list)
    hold_first: asyncio.Event | None = None  # when set: the first request blocks until this event is set
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    in_flight: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.hold_first is not None and not self.in_flight.is_set():
            self.in_flight.set()
            await self.hold_first.wait()
        status = self.script.pop(0) if self.script else 200
        self.requests.append(
            Request(
                at=time.monotonic(),
                event_id=request.headers.get("X-OpenPrem-Event-Id", ""),
                body=body,
                headers=dict(request.headers),
                status=status,
            )
        )
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self.hold_first is not None:
            self.hold_first.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=secret"

    def delivered(self) -> list[dict[str, Any]]:
        """Bodies answered with 200, duplicates (same event id) dropped as a real receiver would."""
        seen: set[str] = set()
        out = []
        for r in self.requests:
            if r.status == 200 and r.event_id not in seen:
                seen.add(r.event_id)
                out.append(r.body)
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()
