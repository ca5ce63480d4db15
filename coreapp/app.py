"""coreapp's composition root (contracts §1): build in dependency order, stop in reverse with timeouts.

config → DB + migrations → the key store (its key; plaintext rows of older versions sealed) → stores → keys →
webhook dispatcher → disk guard, GC → accept path → the API areas on the RPC registry → bus (serving) → the chat
scope (connection, sender, inbound, receipts, templates) of the registered number.  Every object is built here,
once; the chat scope is built here too, per registered number, and replaced as a whole after a
(re-)registration or a restore (``coreapp.scope``).

With multiconnect (``WA_APP_MULTICONNECT``) the same objects are built, then ``coreapp.ha.HaNode`` decides what
this process does: as the primary master it serves the ``master`` route and runs the webhook dispatcher and GC;
as a shard's owner it serves that shard's route and builds the chat scope for that shard only.

Stopping starts with the bus: it stops taking requests (a request arriving now is answered 1011 at once) and
waits for the ones being handled, so no ``messages.send`` is left waiting on an accept path that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coreapp.api.account_extra import AccountExtraApi
from coreapp.api.contacts import ContactsApi
from coreapp.api.handlers import CoreApi
from coreapp.api.messages import MessagesApi
from coreapp.api.ops import OpsApi
from coreapp.api.registry import RpcRegistry
from coreapp.api.settings_extra import SettingsExtraApi
from coreapp.api.webhooks import WebhooksApi
from coreapp.chat.connection import ChatConnection
from coreapp.chat.dispatch import PushDispatcher
from coreapp.ha.guard import RoleGuard
from coreapp.ha.node import HaNode, NodeHooks
from coreapp.ha.reshard import Resharder
from coreapp.maintenance.disk import DiskGuard
from coreapp.maintenance.gc import GcPolicy, GcScheduler, MessageGc
from coreapp.scope import ChatScope, CurrentChat
from coreapp.services.accept import MessageAcceptor
from coreapp.services.backup import BackupService
from coreapp.services.compose import MessageComposer
from coreapp.services.contacts import ContactsService
from coreapp.services.inbound import InboundService, SystemNotices
from coreapp.services.keys import IdentityAcks, IdentityChangeHandler, KeyService
from coreapp.services.mark_read import ReadMarker
from coreapp.services.media import MediaService
from coreapp.services.media_links import LinkFetcher
from coreapp.services.outbound import OutboundSender
from coreapp.services.receipts import ReceiptService
from coreapp.services.registration import RegistrationService
from coreapp.services.statuses import StatusWriter
from coreapp.services.templates import TemplateService
from coreapp.storage.account import AccountStore
from coreapp.storage.backup import BackupStore
from coreapp.storage.contacts import ContactStore
from coreapp.storage.idempotency import IdempotencyStore
from coreapp.storage.keys import KeyStore
from coreapp.storage.leases import LeaseStore
from coreapp.storage.maintenance import MaintenanceStore
from coreapp.storage.messages import MessageStore
from coreapp.storage.settings import APPLICATION, SettingsStore
from coreapp.storage.shard_map import ShardMapStore
from coreapp.storage.templates import TemplateStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from coreapp.webhooks import WebhookDispatcher
from coreapp.webhooks.ca import WebhookCa
from coreapp.webhooks.dispatcher import IDLE_POLL_S
from shared.bus.base import Bus
from shared.config import Settings
from shared.db.engine import Database
from shared.db.migrate import migrate
from shared.ids import WaId
from shared.netguard import AddressPolicy
from shared.shards import ShardSlot
from shared.tasks import TaskSupervisor
from shared.wire.frames import Deliver, IdentityChanged, Receipt

log = logging.getLogger("openprem.coreapp")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_coreapp"
STOP_TIMEOUT_S = 10.0
MULTICONNECT_OUTBOX_POLL_S = 0.2
REGISTRATION_POLL_S = 1.0
SETTINGS_REFRESH_S = 1.0
"""Multiconnect: every node re-reads the application settings the primary master writes within this long."""


async def run_migrations(settings: Settings) -> None:
    await migrate(settings.db, MIGRATIONS, VERSION_TABLE)


@dataclass(frozen=True)
class Stores:
    """Every storage module, one instance each: the only objects that hold SQL."""

    accounts: AccountStore
    keys: KeyStore
    messages: MessageStore
    idempotency: IdempotencyStore
    templates: TemplateStore
    settings: SettingsStore
    webhooks: WebhookStore
    contacts: ContactStore
    maintenance: MaintenanceStore
    backup: BackupStore

    @classmethod
    def build(cls, db: Database, keys: KeyStore, *, multiconnect: bool = False) -> Stores:
        """``keys`` comes from ``KeyStore.open`` (it needs the key-store key and seals older rows first)."""
        accounts = AccountStore(db)
        return cls(
            accounts=accounts,
            keys=keys,
            messages=MessageStore(db),
            idempotency=IdempotencyStore(db),
            templates=TemplateStore(db),
            settings=SettingsStore(db, cache_ttl_s=SETTINGS_REFRESH_S if multiconnect else None),
            webhooks=WebhookStore(db),
            contacts=ContactStore(db),
            maintenance=MaintenanceStore(db),
            backup=BackupStore(db, accounts, keys),
        )


@dataclass(frozen=True)
class Core:
    """What ``CoreApp.start`` builds, all of it present while the app runs."""

    db: Database
    stores: Stores
    keys: KeyService
    identities: IdentityAcks
    """One per process: it remembers which peers have an identity-change record (sends to others read nothing)."""
    dispatcher: WebhookDispatcher
    disk: DiskGuard
    message_gc: MessageGc
    gc_scheduler: GcScheduler
    acceptor: MessageAcceptor
    media: MediaService
    registry: RpcRegistry
    node: HaNode | None
    """Multiconnect: this process's role; ``None`` for the single coreapp of a deployment without it."""


class CoreApp:
    def __init__(self, settings: Settings, bus: Bus) -> None:
        self._settings = settings
        self._bus = bus
        self._supervisor = TaskSupervisor("coreapp")
        self._chat = CurrentChat()
        self._core: Core | None = None
        self._stopped = False
        self._registration_wait: asyncio.Task[None] | None = None

    # --- read-only views (tests, stats) ---------------------------------------------------------------------

    @property
    def core(self) -> Core:
        assert self._core is not None, "CoreApp not started"
        return self._core

    @property
    def db(self) -> Database:
        return self.core.db

    @property
    def stores(self) -> Stores:
        return self.core.stores

    @property
    def media(self) -> MediaService:
        return self.core.media

    @property
    def disk(self) -> DiskGuard:
        return self.core.disk

    @property
    def message_gc(self) -> MessageGc:
        return self.core.message_gc

    @property
    def gc_scheduler(self) -> GcScheduler:
        return self.core.gc_scheduler

    @property
    def api(self) -> RpcRegistry:
        return self.core.registry

    @property
    def current_chat(self) -> CurrentChat:
        return self._chat

    @property
    def chat(self) -> ChatConnection | None:
        return self._chat.link

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        settings, chat, supervisor = self._settings, self._chat, self._supervisor
        multiconnect = settings.ha.multiconnect
        await run_migrations(settings)
        db = await Database.connect(settings.db)
        keys_store = await KeyStore.open(db, settings.keystore, settings.paths.data_dir)
        stores = Stores.build(db, keys_store, multiconnect=multiconnect)
        targets = AddressPolicy.from_settings(settings.fetch)
        max_bytes = settings.web.max_upload_bytes
        fetcher = LinkFetcher(targets, stores.settings, max_bytes, connect_timeout_s=settings.chat.connect_timeout_s)
        media = MediaService(
            settings.chat, settings.paths.media_dir, stores.settings, max_bytes, links=chat, fetcher=fetcher
        )
        keys = KeyService(stores.keys)
        has_identity = await keys.load()
        webhook_ca = WebhookCa(stores.settings)
        dispatcher = WebhookDispatcher(
            db,
            stores.webhooks,
            stores.settings,
            supervisor,
            ssl_context_provider=webhook_ca.context,
            targets=targets,
            limits=settings.outbox,
            # Multiconnect: rows are committed by every shard owner, so the primary master also polls.
            idle_poll_s=MULTICONNECT_OUTBOX_POLL_S if multiconnect else IDLE_POLL_S,
        )
        if not multiconnect:
            await dispatcher.start()  # else only the primary master delivers (``_hooks``)
        disk = self._build_disk_guard(db, stores.webhooks, dispatcher)
        await disk.check()  # before the API is up, so a full disk is refused from the first request
        disk.start(supervisor)
        message_gc = MessageGc(stores.maintenance, GcPolicy.from_settings(settings.maintenance))
        gc_scheduler = GcScheduler.from_settings(message_gc, stores.settings, settings.maintenance)
        node: HaNode | None = None
        maps: ShardMapStore | None = None
        resharder: Resharder | None = None
        if multiconnect:
            leases, maps = LeaseStore(db), ShardMapStore(db)
            overrides = functools.partial(stores.settings.get, APPLICATION, fenced=False)
            node = HaNode(settings.ha, db, leases, maps, self._bus, supervisor, self._hooks(), overrides)
            # Long enough for every owner to notice (a second) and, if one cannot release, for its lease to expire.
            resharder = Resharder(maps, leases, give_up_s=2 * settings.ha.lease_ttl_s + 5.0)
            gc_scheduler.gate = lambda: node is not None and node.primary
        gc_scheduler.start(supervisor)
        acceptor = MessageAcceptor(db, stores.messages, stores.idempotency, supervisor, chat.wake_sender)
        acceptor.start()
        identities = IdentityAcks(stores.keys, stores.settings)
        registration = RegistrationService(
            settings.chat, db, stores.accounts, stores.keys, keys, supervisor, self._on_registered
        )
        backup = BackupService(
            stores.backup, stores.settings, keys, chat.clear, self._on_registered, restored=identities.forget
        )
        composer = MessageComposer(stores.templates, media, identity_check=identities.check_send)
        registry = RpcRegistry()
        for area in (
            CoreApi(chat, registration, stores.settings, disk.errors),
            MessagesApi(chat, acceptor, composer, ReadMarker(db, stores.messages, chat), disk.ensure_room),
            AccountExtraApi(stores.accounts, chat, maps=maps, resharder=resharder),
            ContactsApi(ContactsService(stores.contacts, chat, supervisor), identities),
            SettingsExtraApi(stores.settings, backup, webhook_ca),
            OpsApi(settings, db, stores.maintenance, dispatcher, chat, message_gc, disk, node=node),
            WebhooksApi(stores.webhooks, dispatcher),
        ):
            area.mount(registry)
        self._core = Core(
            db=db,
            stores=stores,
            keys=keys,
            identities=identities,
            dispatcher=dispatcher,
            disk=disk,
            message_gc=message_gc,
            gc_scheduler=gc_scheduler,
            acceptor=acceptor,
            media=media,
            registry=registry,
            node=node,
        )
        if node is not None:
            self._bus.serve(RoleGuard(registry.handle, node).handle)
            await self._bus.start()
            await node.start()
            log.info("coreapp started (multiconnect node %s)", settings.ha.node_id)
            return
        self._bus.serve(registry.handle)
        await self._bus.start()
        account = await stores.accounts.get()
        if account is not None and account.registered and account.wa_id is not None and has_identity:
            await self._on_registered(account.wa_id)
        else:
            log.info("not registered yet: waiting for account.register / account.verify")
        log.info("coreapp started")

    async def stop(self) -> None:
        """Stop taking requests first, then the chat scope and the rest in reverse order of ``start``.  Once."""
        if self._stopped:
            return
        self._stopped = True
        core = self._core
        steps: list[tuple[str, Awaitable[Any] | None]] = [
            ("serving", self._bus.unserve()),
            ("role", core.node.stop() if core and core.node else None),
            ("chat", self._chat.clear()),
            ("accept path", core.acceptor.stop() if core else None),
            ("media", core.media.close() if core else None),
            ("bus", self._bus.stop()),
            ("webhook dispatcher", core.dispatcher.stop() if core else None),
            ("tasks", self._supervisor.close(STOP_TIMEOUT_S)),
            ("database", core.db.close() if core else None),
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

    # --- the chat scope -------------------------------------------------------------------------------------

    async def _on_registered(self, wa_id: WaId) -> None:
        if self._settings.ha.multiconnect:
            # The primary master registered the number; each shard's owner connects for its shard on its own
            # (``_serve_shard`` sees the account registered).
            log.info("%s registered: the shard owners connect", wa_id)
            return
        await self._chat.replace(lambda: self._build_chat(wa_id))

    # --- multiconnect roles ---------------------------------------------------------------------------------

    def _hooks(self) -> NodeHooks:
        async def become_primary() -> None:
            await self.core.dispatcher.start()

        async def stop_primary() -> None:
            await self.core.dispatcher.stop()

        async def take_shard(slot: ShardSlot, may_act: Callable[[], bool]) -> None:
            self._registration_wait = self._supervisor.spawn(
                f"shard-{slot.shard}-scope", self._serve_shard(slot, may_act)
            )

        async def drop_shard() -> None:
            wait, self._registration_wait = self._registration_wait, None
            if wait is not None:
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await wait
            await self._chat.clear()

        return NodeHooks(
            become_primary=become_primary,
            stop_primary=stop_primary,
            take_shard=take_shard,
            drop_shard=drop_shard,
            gateway_status=lambda: self._chat.gateway_status().value,
        )

    async def _serve_shard(self, slot: ShardSlot, may_act: Callable[[], bool]) -> None:
        """Once the number is registered (by the primary master, perhaps later), connect for ``slot``."""
        core = self.core
        while True:
            account = await core.stores.accounts.get()
            if account is not None and account.registered and account.wa_id is not None and await core.keys.load():
                await self._chat.replace(functools.partial(self._build_chat, account.wa_id, slot, may_act))
                return
            await asyncio.sleep(REGISTRATION_POLL_S)

    def _build_chat(
        self, wa_id: WaId, slot: ShardSlot | None = None, may_act: Callable[[], bool] | None = None
    ) -> ChatScope:
        core, settings, supervisor = self.core, self._settings, self._supervisor
        db, stores, keys, notify, media = core.db, core.stores, core.keys, core.dispatcher.notify, core.media
        pushes = PushDispatcher()
        connection = ChatConnection(settings.chat, supervisor, wa_id, keys.sign, pushes, slot=slot, may_act=may_act)
        statuses = StatusWriter(stores.messages, stores.webhooks)
        sender = OutboundSender(
            db, connection, stores.messages, stores.keys, keys, statuses, stores.settings, supervisor, notify, slot=slot
        )
        inbound = InboundService(
            db,
            connection,
            stores.messages,
            stores.keys,
            keys,
            stores.webhooks,
            notify,
            media=media,
            room=core.disk.wait_for_room,
        )
        receipts = ReceiptService(db, connection, stores.messages, statuses, stores.settings, notify)
        templates = TemplateService(stores.templates, connection)
        notices = SystemNotices(db, stores.webhooks, stores.keys, stores.settings, notify, core.identities)
        identity_changes = IdentityChangeHandler(
            keys, stores.keys, connection, sender.forget_devices, notices.identity_changed
        )
        pushes.register(Deliver, inbound.handle)
        pushes.register_group(Receipt, receipts.handle_many)  # receipts queued together share a transaction
        pushes.register(IdentityChanged, identity_changes.handle)
        connection.add_sync_step(media.on_login)  # before any step that awaits: pushes may need it
        connection.add_sync_step(templates.sync)
        connection.add_tick(templates.refresh)
        connection.add_sync_step(lambda login: keys.top_up(connection, login), after_offline_drain=True)
        connection.add_ready_listener(sender.wake)
        return ChatScope(wa_id=wa_id, connection=connection, sender=sender, inbound=inbound, receipts=receipts)
