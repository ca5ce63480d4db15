"""coreapp's composition root (contracts §1): build in dependency order, stop in reverse with timeouts.

config → DB + migrations → stores → keys → webhook dispatcher → accept path → bus (RPC) → chat connection and
the services that live on it (sender, inbound, receipts, templates).  The chat part is built per registered
number and rebuilt after a (re-)registration.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreapp.api.account_extra import account_extra_routes
from coreapp.api.contacts import contacts_routes
from coreapp.api.handlers import CoreView, RpcApi
from coreapp.api.messages import messages_routes
from coreapp.api.ops import OpsApi
from coreapp.api.settings_extra import SettingsExtraApi
from coreapp.api.webhooks import webhooks_routes
from coreapp.chat.connection import ChatConnection
from coreapp.chat.dispatch import PushDispatcher
from coreapp.chat.link import ConnState
from coreapp.maintenance.disk import DiskGuard
from coreapp.maintenance.gc import GcPolicy, GcScheduler, MessageGc
from coreapp.services.accept import MessageAcceptor
from coreapp.services.backup import BackupService
from coreapp.services.inbound import InboundService, SystemNotices
from coreapp.services.keys import IdentityAcks, IdentityChangeHandler, KeyService
from coreapp.services.media import MediaService
from coreapp.services.outbound import OutboundSender
from coreapp.services.receipts import ReceiptService
from coreapp.services.registration import RegistrationService
from coreapp.services.statuses import StatusWriter
from coreapp.services.templates import TemplateService
from coreapp.storage.account import AccountStore
from coreapp.storage.backup import BackupStore
from coreapp.storage.keys import KeyStore
from coreapp.storage.messages import MessageStore
from coreapp.storage.settings import SettingsStore
from coreapp.storage.templates import TemplateStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from coreapp.webhooks import WebhookDispatcher
from coreapp.webhooks.ca import WebhookCa
from shared.bus.base import Bus
from shared.config import Settings
from shared.db.engine import Database
from shared.db.migrate import migrate
from shared.ids import WaId
from shared.tasks import TaskSupervisor
from shared.wire.frames import Deliver, IdentityChanged, Receipt

log = logging.getLogger("openprem.coreapp")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_coreapp"
STOP_TIMEOUT_S = 10.0


async def run_migrations(settings: Settings) -> None:
    await migrate(settings.db, MIGRATIONS, VERSION_TABLE)


@dataclass
class Stores:
    accounts: AccountStore
    keys: KeyStore
    messages: MessageStore
    templates: TemplateStore
    settings: SettingsStore
    webhooks: WebhookStore

    @classmethod
    def build(cls, db: Database) -> Stores:
        return cls(
            accounts=AccountStore(db),
            keys=KeyStore(db),
            messages=MessageStore(db),
            templates=TemplateStore(db),
            settings=SettingsStore(db),
            webhooks=WebhookStore(db),
        )


@dataclass
class ChatPart:
    """The connection for one registered number and the services that use it."""

    wa_id: WaId
    connection: ChatConnection
    sender: OutboundSender
    inbound: InboundService
    receipts: ReceiptService


class CoreApp:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self._settings = settings
        self._bus = bus
        self._supervisor = TaskSupervisor("coreapp")
        self._db: Database | None = None
        self._stores: Stores | None = None
        self._keys: KeyService | None = None
        self._identities: IdentityAcks | None = None
        self._dispatcher: WebhookDispatcher | None = None
        self._acceptor: MessageAcceptor | None = None
        self._chat: ChatPart | None = None
        self._chat_lock = asyncio.Lock()
        self.api: RpcApi | None = None
        self.media: MediaService | None = None
        self.disk: DiskGuard | None = None
        self.message_gc: MessageGc | None = None
        self.gc_scheduler: GcScheduler | None = None

    # --- read-only views (tests, stats) ---------------------------------------------------------------------

    @property
    def db(self) -> Database:
        assert self._db is not None, "CoreApp not started"
        return self._db

    @property
    def stores(self) -> Stores:
        assert self._stores is not None, "CoreApp not started"
        return self._stores

    @property
    def chat(self) -> ChatConnection | None:
        return self._chat.connection if self._chat is not None else None

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        settings = self._settings
        await run_migrations(settings)
        db = self._db = await Database.connect(settings.db)
        stores = self._stores = Stores.build(db)
        self.media = MediaService(
            settings.chat, settings.paths.media_dir, stores.settings, settings.web.max_upload_bytes
        )
        keys = self._keys = KeyService(stores.keys)
        has_identity = await keys.load()
        webhook_ca = WebhookCa(stores.settings)
        dispatcher = self._dispatcher = WebhookDispatcher(
            db, stores.webhooks, stores.settings, self._supervisor, ssl_context_provider=webhook_ca.context
        )
        await dispatcher.start()
        disk = self.disk = self._build_disk_guard(db, stores.webhooks, dispatcher)
        await disk.check()  # before the API is up, so a full disk is refused from the first request
        disk.start(self._supervisor)
        message_gc = self.message_gc = MessageGc(db, GcPolicy.from_settings(settings.maintenance))
        self.gc_scheduler = GcScheduler.from_settings(message_gc, stores.settings, settings.maintenance)
        self.gc_scheduler.start(self._supervisor)
        acceptor = self._acceptor = MessageAcceptor(db, stores.messages, self._supervisor, self._wake_sender)
        acceptor.start()
        registration = RegistrationService(
            settings.chat, db, stores.accounts, stores.keys, keys, self._supervisor, self._on_registered
        )
        view = CoreView(self._own_wa_id, self._chat_state)
        # One per process: it remembers which peers have an identity-change record (sends to others read nothing).
        identities = self._identities = IdentityAcks(stores.keys, stores.settings)
        self.api = RpcApi(view, registration, stores.settings, critical_errors=disk.errors)
        # Other areas mount their RPC methods here, one `self.api.add_routes(...)` line each.
        self.api.add_routes(
            messages_routes(
                view=view, db=db, messages=stores.messages, templates=stores.templates, acceptor=acceptor,
                link=lambda: self.chat, media=lambda: self.media, identities=identities,
                ensure_room=disk.ensure_room,
            )
        )  # fmt: skip
        self.api.add_routes(
            OpsApi(
                settings, db, dispatcher, self.api.gateway_status, lambda: self._chat, message_gc=message_gc, disk=disk
            ).routes()
        )
        self.api.add_routes(account_extra_routes(stores.accounts, lambda: self.chat))
        self.api.add_routes(contacts_routes(db, lambda: self.chat, self._supervisor, identities))
        self.api.add_routes(webhooks_routes(stores.webhooks))
        backup = BackupService(
            BackupStore(db, stores.accounts, stores.keys),
            stores.settings,
            keys,
            self._pause_chat,
            self._on_registered,
            restored=identities.forget,
        )
        self.api.add_routes(SettingsExtraApi(stores.settings, backup, webhook_ca).routes())
        self._bus.serve(self.api.handle)
        await self._bus.start()
        account = await stores.accounts.get()
        if account is not None and account.registered and account.wa_id is not None and has_identity:
            await self._start_chat(account.wa_id)
        else:
            log.info("not registered yet: waiting for account.register / account.verify")
        log.info("coreapp started")

    async def stop(self) -> None:
        async with self._chat_lock:
            await self._stop_chat()
        steps = [
            ("accept path", self._acceptor.stop() if self._acceptor else None),
            ("media", self.media.close() if self.media else None),
            ("bus", self._bus.stop()),
            ("webhook dispatcher", self._dispatcher.stop() if self._dispatcher else None),
            ("tasks", self._supervisor.close(STOP_TIMEOUT_S)),
            ("database", self._db.close() if self._db else None),
        ]
        for name, step in steps:
            if step is None:
                continue
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await step
            except Exception:
                log.exception("stopping %s failed", name)
        log.info("coreapp stopped")

    def _build_disk_guard(self, db: Database, webhooks: WebhookStore, dispatcher: WebhookDispatcher) -> DiskGuard:
        paths, maintenance = self._settings.paths, self._settings.maintenance

        async def report(body: dict[str, Any]) -> None:
            await db.run("disk.critical", lambda conn: webhooks.enqueue_txn(conn, WebhookKind.ERROR, body))
            dispatcher.notify()

        dirs = {"data": paths.data_dir, "log": paths.log_dir, "media": paths.media_dir}
        return DiskGuard(
            dirs, maintenance.disk_min_free_mb, interval_s=maintenance.disk_check_interval_s, report_error=report
        )

    # --- the chat part --------------------------------------------------------------------------------------

    def _own_wa_id(self) -> WaId | None:
        return self._chat.wa_id if self._chat is not None else None

    def _chat_state(self) -> ConnState | None:
        return self._chat.connection.state if self._chat is not None else None

    def _wake_sender(self) -> None:
        if self._chat is not None:
            self._chat.sender.wake()

    async def _on_registered(self, wa_id: WaId) -> None:
        await self._start_chat(wa_id)

    async def _pause_chat(self) -> None:
        """Stop the chat part (a restore replaces the keys under it); ``_start_chat`` brings it back."""
        async with self._chat_lock:
            await self._stop_chat()

    async def _start_chat(self, wa_id: WaId) -> None:
        async with self._chat_lock:
            await self._stop_chat()
            self._chat = self._build_chat(wa_id)
            self._chat.sender.start()
            self._chat.connection.start()

    def _build_chat(self, wa_id: WaId) -> ChatPart:
        assert self._db is not None and self._stores is not None and self._keys is not None
        assert self._dispatcher is not None
        db, stores, keys, notify = self._db, self._stores, self._keys, self._dispatcher.notify
        pushes = PushDispatcher()
        connection = ChatConnection(self._settings.chat, self._supervisor, wa_id, keys.sign, pushes)
        statuses = StatusWriter(stores.messages, stores.webhooks)
        sender = OutboundSender(
            db, connection, stores.messages, stores.keys, keys, statuses, stores.settings, self._supervisor, notify
        )
        inbound = InboundService(
            db, connection, stores.messages, stores.keys, keys, stores.webhooks, notify, media=self.media
        )
        receipts = ReceiptService(db, connection, stores.messages, statuses, stores.settings, notify)
        templates = TemplateService(stores.templates, connection)
        assert self._identities is not None, "start() builds it first"
        notices = SystemNotices(db, stores.webhooks, stores.settings, notify, self._identities)
        identity_changes = IdentityChangeHandler(
            keys, stores.keys, connection, sender.forget_devices, notices.identity_changed
        )
        pushes.register(Deliver, inbound.handle)
        pushes.register_group(Receipt, receipts.handle_many)  # receipts queued together share a transaction
        pushes.register(IdentityChanged, identity_changes.handle)
        if self.media is not None:
            self.media.bind(connection)
            connection.add_sync_step(self.media.on_login)  # before any step that awaits: pushes may need it
        connection.add_sync_step(templates.sync)
        connection.add_tick(templates.refresh)

        connection.add_sync_step(lambda login: keys.top_up(connection, login), after_offline_drain=True)
        connection.add_ready_listener(sender.wake)
        return ChatPart(wa_id=wa_id, connection=connection, sender=sender, inbound=inbound, receipts=receipts)

    async def _stop_chat(self) -> None:
        chat, self._chat = self._chat, None
        if chat is None:
            return
        for name, step in (("chat connection", chat.connection.stop()), ("sender", chat.sender.stop())):
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await step
            except Exception:
                log.exception("stopping %s failed", name)
