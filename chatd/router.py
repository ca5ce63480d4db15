"""Requests of logged-in businesses, and who is logged in.

One live session per number and shard (multiconnect: a number registered for N shards keeps N sessions, one per
shard): a second login for the same shard kicks the older one with the conflict notice the original network
sends, and a login with another shard count closes the sessions of the old count (they reconnect).
``Send`` is deduplicated by message id per business (a resend after a reconnect is acked again, never delivered
twice) and acked only once its envelopes are durably queued for the phone.  A new message over the send rates or
from a quality-restricted business is refused (429 / 471, ``chatd.limits``) and not accepted.
"""

from __future__ import annotations

import logging
from typing import Protocol

from chatd.clock import Clock
from chatd.contacts import check_contacts
from chatd.delivery import PhoneDelivery
from chatd.directory import Directory
from chatd.errors import Refused
from chatd.limits import Limits
from chatd.outbox import Outbox
from chatd.phones import Phones
from chatd.registration import set_two_step
from chatd.store import Store
from chatd.templates import TemplateStore
from shared.errors import ErrorCode
from shared.tasks import TaskSupervisor
from shared.wire.frames import (
    Ack,
    Bundles,
    CheckContacts,
    Deliver,
    Error,
    Frame,
    GetBundles,
    GetTemplates,
    IdentityChanged,
    OfflineDone,
    Ping,
    Pong,
    PublishPreKeys,
    ReadReceipt,
    Receipt,
    Send,
    SetTwoStep,
    Templates,
)

log = logging.getLogger("openprem.chatd.router")

CONFLICT = "Conflict: Detected multiple instances with the same number"
_SEEN = "seen"


class BusinessConn(Protocol):
    """What the router needs of a logged-in connection (``chatd.session.Session``)."""

    wa_id: str
    device_id: int
    shard: int
    shards: int

    async def push(self, frame: Deliver | Receipt | IdentityChanged | OfflineDone) -> None: ...

    async def kick(self, reason: str, *, conflict: bool) -> None: ...


class Router:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        phones: Phones,
        delivery: PhoneDelivery,
        outbox: Outbox,
        templates: TemplateStore,
        clock: Clock,
        tasks: TaskSupervisor,
        limits: Limits | None = None,
        seen_limit: int = 200_000,
    ) -> None:
        self._seen_limit = seen_limit
        self._limits = limits
        self._store = store
        self._directory = directory
        self._phones = phones
        self._delivery = delivery
        self._outbox = outbox
        self._templates = templates
        self._clock = clock
        self._tasks = tasks
        self._live: dict[tuple[str, int], BusinessConn] = {}  # (number, shard)
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest are forgotten first

    async def load(self) -> None:
        self._seen = dict.fromkeys(key for key, _ in await self._store.load(_SEEN))
        self._forget_oldest_seen()

    def live(self, wa_id: str) -> list[BusinessConn]:
        """The number's live sessions (one per shard)."""
        return [conn for (number, _), conn in self._live.items() if number == wa_id]

    async def login(self, conn: BusinessConn) -> None:
        """Make ``conn`` the session of its shard; an older one of that shard is kicked with the conflict notice,
        sessions that use another shard count are closed (the shard count changed: they come back with it)."""
        for other in self.live(conn.wa_id):
            if other.shards != conn.shards:
                log.warning("+%s now runs %d shard(s): closing a session for %d", conn.wa_id, conn.shards, other.shards)
                self.logout(other)
                await other.kick(f"shard count changed to {conn.shards}", conflict=False)
        key = (conn.wa_id, conn.shard)
        old = self._live.get(key)
        self._live[key] = conn
        if old is not None and old is not conn:
            log.warning(
                "+%s shard %d logged in again: kicking the older session (%s)", conn.wa_id, conn.shard, CONFLICT
            )
            self._outbox.detach(conn.wa_id, conn.shard, old)
            await old.kick(CONFLICT, conflict=True)

    async def attach(self, conn: BusinessConn) -> None:
        """Push the shard's offline backlog then ``OfflineDone``; later pushes of the shard go straight to ``conn``."""
        if self._live.get((conn.wa_id, conn.shard)) is not conn:
            return
        try:
            count = await self._outbox.attach(conn.wa_id, conn.shard, conn.shards, conn)
        except (ConnectionError, OSError) as exc:
            log.info("+%s left while its backlog was written (%s); it stays pending", conn.wa_id, exc)
            return
        log.info("+%s: offline backlog of %d push(es) written", conn.wa_id, count)

    async def kick(self, wa_id: str, reason: str) -> bool:
        """Close the number's live sessions (not a conflict: the clients reconnect); False when none."""
        conns = self.live(wa_id)
        for conn in conns:
            log.warning("+%s kicked: %s", wa_id, reason)
            await conn.kick(reason, conflict=False)
        return bool(conns)

    def logout(self, conn: BusinessConn) -> None:
        self._outbox.detach(conn.wa_id, conn.shard, conn)
        if self._live.get((conn.wa_id, conn.shard)) is conn:
            del self._live[(conn.wa_id, conn.shard)]

    def identity_key(self, wa_id: str) -> bytes | None:
        """The identity key a business logs in with; None for numbers that are not registered businesses."""
        return self._directory.identity_key(wa_id, 0) if self._directory.account(wa_id) else None

    def prekeys_remaining(self, wa_id: str) -> int:
        return self._directory.prekeys_remaining(wa_id, 0)

    async def handle(self, conn: BusinessConn, frame: Frame) -> Frame | None:
        """The reply to one request of a logged-in business (``None`` for acks of our pushes)."""
        match frame:
            case Ack() | Error():
                self._ack(conn, frame)
                return None
            case Ping():
                return Pong(id=frame.id, server_time=self._clock.now())
            case Send():
                return await self._send(conn, frame)
            case GetBundles():
                return await self._bundles(frame)
            case GetTemplates():
                return Templates(id=frame.id, templates=self._templates.all())
            case PublishPreKeys():
                added = self._directory.add_prekeys(
                    conn.wa_id, conn.device_id, frame.one_time_prekeys, frame.signed_prekey
                )
                if not added:
                    raise Refused(ErrorCode.NOT_FOUND, "no keys registered for this device")
                await self._store.sync()
                return Ack(id=frame.id)
            case ReadReceipt():
                return await self._business_read(conn, frame)
            case CheckContacts():
                return check_contacts(self._directory, self._phones, frame)
            case SetTwoStep():
                set_two_step(self._directory, conn.wa_id, frame.pin)
                await self._store.sync()
                return Ack(id=frame.id)
            case _:
                raise Refused(ErrorCode.INVALID_REQUEST, f"unexpected {type(frame).__name__} frame after login")

    def _ack(self, conn: BusinessConn, frame: Ack | Error) -> None:
        if isinstance(frame, Error):
            log.warning("+%s refused push %d (%d %s); dropping it", conn.wa_id, frame.id, frame.code, frame.message)
        if not self._outbox.ack(conn.wa_id, frame.id):
            log.debug("+%s acked unknown push %d", conn.wa_id, frame.id)

    async def _send(self, conn: BusinessConn, frame: Send) -> Ack:
        to = frame.to.lstrip("+")
        phone = self._phones.get(to)
        if phone is None or phone.state.changed_number:
            raise Refused(ErrorCode.INVALID_USER, f"{frame.to} is not a WhatsApp user")
        if not frame.envelopes:
            raise Refused(ErrorCode.INVALID_PARAMETER, "a message needs at least one envelope")
        key = f"{conn.wa_id}/{frame.message_id}"
        if key in self._seen:
            log.info("+%s resent %s: acked again, not delivered twice", conn.wa_id, frame.message_id)
            return Ack(id=frame.id)
        if self._limits is not None:
            self._limits.check_send(conn.wa_id, to)
        self._seen[key] = None
        self._store.put(_SEEN, key, "")
        self._forget_oldest_seen()
        self._delivery.accept(conn.wa_id, conn.device_id, frame, phone)
        await self._store.sync()
        return Ack(id=frame.id)

    def _forget_oldest_seen(self) -> None:
        while len(self._seen) > self._seen_limit:
            oldest = next(iter(self._seen))
            del self._seen[oldest]
            self._store.delete(_SEEN, oldest)

    async def _business_read(self, conn: BusinessConn, frame: ReadReceipt) -> Ack:
        """The business read a phone's message: shown on the phone's sent message (``/admin/phones/{id}/sent``)."""
        phone = self._phones.get(frame.to.lstrip("+"))
        if phone is None:
            raise Refused(ErrorCode.INVALID_USER, f"{frame.to} is not a WhatsApp user")
        if self._phones.business_read(phone, frame.message_id, conn.wa_id):
            await self._store.sync()
        else:
            log.info("+%s read %s, which +%s never sent it", conn.wa_id, frame.message_id, phone.wa_id)
        return Ack(id=frame.id)

    async def _bundles(self, frame: GetBundles) -> Bundles:
        wa_id = frame.wa_id.lstrip("+")
        if not self._directory.devices(wa_id):
            raise Refused(ErrorCode.INVALID_USER, f"{frame.wa_id} is not a WhatsApp user")
        devices = self._directory.take_bundles(wa_id)
        await self._store.sync()
        if self._phones.get(wa_id) is not None:
            self._tasks.spawn(f"replenish:{wa_id}", self._phones.replenish(wa_id))
        return Bundles(id=frame.id, wa_id=wa_id, devices=devices)
