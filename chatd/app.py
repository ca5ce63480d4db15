"""``Chatd``: the sandbox's composition root (contracts §1).

Built in dependency order at ``start`` (CA and keys → store → clock → directory, registration, templates,
outbox, phones → chat listeners → admin API) and stopped in reverse, so the store flushes last.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from chatd.admin import AdminApi
from chatd.ca import CertificateAuthority
from chatd.clock import Clock
from chatd.delivery import PhoneDelivery
from chatd.directory import Directory
from chatd.faults import Faults
from chatd.limits import Limits
from chatd.media import MediaStore
from chatd.outbox import Outbox
from chatd.phones import Phones
from chatd.policy import Policy
from chatd.registration import Registrar
from chatd.router import Router
from chatd.server import ChatServer
from chatd.session import Session
from chatd.store import Store
from chatd.templates import TemplateStore
from shared.config import SandboxSettings
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.chatd")

DEMO_PHONES = {"12025550123": "Kerry Fisher", "12025550124": "Sam Lee"}
_CLOCK = "clock"


class Chatd:
    def __init__(self, settings: SandboxSettings) -> None:
        self._settings = settings
        self._tasks = TaskSupervisor("chatd")
        self._store = Store(settings.data_dir / "chatd.db")
        self._faults = Faults()
        self._server: ChatServer | None = None
        self._admin: web.AppRunner | None = None
        self._media: web.AppRunner | None = None
        self._media_store: MediaStore | None = None
        self._phones: Phones | None = None

    @property
    def ca_file(self) -> Path:
        """chatd's CA certificate (PEM): what coreapp trusts as ``WA_CHAT_CA_FILE``."""
        return self._settings.data_dir / "ca.pem"

    @property
    def admin_url(self) -> str:
        return f"http://{self._settings.admin_host}:{self._settings.admin_port}"

    async def start(self) -> None:
        s = self._settings
        ca = await asyncio.to_thread(CertificateAuthority.load_or_create, s.data_dir, s.server_name)
        await self._store.open()
        store, tasks = self._store, self._tasks

        clock = Clock()
        saved = dict(await store.load(_CLOCK))
        if "offset" in saved:
            clock.advance(float(saved["offset"]))
        clock.on_advance(lambda: store.put(_CLOCK, "offset", repr(clock.offset_s)))
        self._faults.use_clock(clock.now)
        limits = Limits(store, clock)

        directory = Directory(store)
        registrar = Registrar(ca, directory, store, clock)
        templates = TemplateStore(store, clock)
        outbox = Outbox(store, clock, tasks)
        media = self._media_store = MediaStore(s.data_dir / "media", store, clock, s.server_name, faults=self._faults)
        phones = Phones(store, directory, outbox, clock, media=media, inbox_limit=s.inbox_limit)
        policy = Policy(store)
        delivery = PhoneDelivery(
            store,
            phones,
            directory,
            outbox,
            clock,
            tasks,
            s.receipt_delay_s,
            s.read_delay_s,
            media=media,
            policy=policy,
        )
        delivery.unrenderable = templates.render_failure  # phones render templates from the network's copy
        router = Router(
            store, directory, phones, delivery, outbox, templates, clock, tasks, limits=limits, seen_limit=s.seen_limit
        )
        for component in (directory, registrar, templates, outbox, media, phones, policy, delivery, router, limits):
            await component.load()
        await store.sync()
        self._phones = phones
        outbox.start()
        delivery.start()

        def new_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Session:
            return Session(
                reader,
                writer,
                router=router,
                registrar=registrar,
                faults=self._faults,
                tasks=tasks,
                clock=clock,
                media=media,
                limits=limits,
            )

        ssl_context = await asyncio.to_thread(ca.server_ssl_context)
        self._server = ChatServer(s.host, [s.port, s.fallback_port], ssl_context, new_session, self._faults)
        await self._server.start()
        self._media = web.AppRunner(media.app(), access_log=None)
        await self._media.setup()
        await web.TCPSite(self._media, s.host, s.media_port, ssl_context=ssl_context).start()
        media.port = s.media_port

        admin = AdminApi(
            ca=ca,
            clock=clock,
            store=store,
            directory=directory,
            registrar=registrar,
            phones=phones,
            delivery=delivery,
            outbox=outbox,
            router=router,
            templates=templates,
            faults=self._faults,
            policy=policy,
            limits=limits,
        )
        self._admin = web.AppRunner(admin.app(), access_log=None)
        await self._admin.setup()
        await web.TCPSite(self._admin, s.admin_host, s.admin_port).start()
        log.info(
            "chatd ready: chat on %s:%d and :%d, media on :%d, admin API on %s, CA %s",
            s.host,
            s.port,
            s.fallback_port,
            s.media_port,
            self.admin_url,
            self.ca_file,
        )

    async def create_demo_phones(self) -> None:
        """The demo's phones (``WA_SANDBOX_DEMO=1``), created once."""
        if self._phones is None:
            raise RuntimeError("start chatd first")
        for wa_id, name in DEMO_PHONES.items():
            if self._phones.get(wa_id) is None:
                await self._phones.create(wa_id, name)

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self._media is not None:
            await self._media.cleanup()
            self._media = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        await self._tasks.close()
        await self._store.close()
        log.info("chatd stopped")
