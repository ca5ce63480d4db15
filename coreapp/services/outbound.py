"""The sender: accepted messages → per-device envelopes → ``Send`` → ``sent`` on the network's ack.

Crash safety: a message's envelopes and the session states that produced them are committed together before
the first ``Send``; every later attempt (after a crash or a reconnect) resends those same bytes, so a chain key
is never used twice and the network drops the duplicate by message id.  Sends are pipelined: up to ``WINDOW``
messages wait for their ack at once; acks are applied in groups (one transaction each).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.link import ChatLink, ConnState
from coreapp.chat.session import expect
from coreapp.models import MessageStatus, OutboundMessage
from coreapp.services.keys import KeyService
from coreapp.services.statuses import StatusError, StatusWriter
from coreapp.storage.keys import KeyStore
from coreapp.storage.messages import MessageStore
from coreapp.storage.settings import SettingsStore
from shared.db.engine import Database
from shared.errors import ErrorCode
from shared.ids import MessageId, WaId
from shared.tasks import TaskSupervisor
from shared.wire import e2e
from shared.wire.frames import Ack, Bundles, DeviceBundle, Envelope, Error, Frame, GetBundles, Send

log = logging.getLogger("openprem.coreapp.outbound")

WINDOW = 256
"""Messages sent and waiting for their ack at most."""
FETCH = 64
DEVICE_CACHE_TTL_S = 60.0
DEVICE_CACHE_MAX = 10_000
RETRY_LATER = frozenset(
    c.code
    for c in (
        ErrorCode.API_SERVICE,
        ErrorCode.RATE_LIMIT_HIT,
        ErrorCode.SPAM_RATE_LIMIT,
        ErrorCode.NOT_READY,
        ErrorCode.TOO_MANY_REQUESTS,
        ErrorCode.OVERLOADED,
    )
)
"""Send errors that clear up by themselves: the message stays accepted and is sent again later."""
RETRY_DELAY_S = 5.0
IDLE_POLL_S = 1.0

_envelopes_encoder = msgspec.msgpack.Encoder()
_envelopes_decoder = msgspec.msgpack.Decoder(list[Envelope])


class RecipientInvalid(Exception):
    def __init__(self, code: int, title: str) -> None:
        super().__init__(f"{code} {title}")
        self.code = code
        self.title = title


@dataclass(frozen=True, slots=True)
class _Reply:
    message: OutboundMessage
    future: asyncio.Future[Frame]


class OutboundSender:
    def __init__(
        self,
        db: Database,
        link: ChatLink,
        messages: MessageStore,
        key_store: KeyStore,
        keys: KeyService,
        statuses: StatusWriter,
        settings: SettingsStore,
        supervisor: TaskSupervisor,
        notify_webhooks: Callable[[], None],
    ) -> None:
        self._db = db
        self._link = link
        self._messages = messages
        self._key_store = key_store
        self._keys = keys
        self._statuses = statuses
        self._settings = settings
        self._supervisor = supervisor
        self._notify_webhooks = notify_webhooks
        self._wake = asyncio.Event()
        self._inflight: dict[MessageId, OutboundMessage] = {}
        self._replies: asyncio.Queue[_Reply] = asyncio.Queue()
        self._devices: dict[WaId, tuple[float, list[int]]] = {}
        self._cursor = 0
        self._generation = -1
        self._retry_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Metrics (``/v1/stats/app``): messages the network acked as sent / answered with a failure.
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        self._tasks = [
            self._supervisor.spawn_forever("outbound.sender", self._send_loop),
            self._supervisor.spawn_forever("outbound.acks", self._ack_loop),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)

    def wake(self) -> None:
        """New accepted messages were committed, or the connection became ready."""
        self._wake.set()

    def forget_devices(self, peer: WaId) -> None:
        self._devices.pop(peer, None)

    # --- sending --------------------------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            await self._link.wait_ready()
            if self._link.generation != self._generation:  # a reconnect: resend everything not yet acked
                self._generation = self._link.generation
                self._cursor = 0
                self._inflight.clear()
            if self._retry_at is not None and time.monotonic() >= self._retry_at:
                self._retry_at, self._cursor = None, 0
            free = WINDOW - len(self._inflight)
            batch = await self._messages.pending_outbound(self._cursor, min(free, FETCH)) if free > 0 else []
            if not batch:
                await self._idle()
                continue
            for message in batch:
                if self._link.generation != self._generation or self._link.state is not ConnState.READY:
                    break
                if message.id in self._inflight:
                    self._cursor = message.seq
                    continue
                if not await self._send_one(message):
                    break
                self._cursor = message.seq

    async def _idle(self) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(IDLE_POLL_S):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _send_one(self, message: OutboundMessage) -> bool:
        """Encrypt if needed and send; ``False`` when sending must pause (connection trouble)."""
        try:
            envelopes = message.envelopes or await self._encrypt(message)
            frame = Send(
                message_id=message.id,
                to=message.peer,
                envelopes=_envelopes_decoder.decode(envelopes),
                timestamp=message.timestamp,
            )
            future = await self._link.send_request(frame)
        except RecipientInvalid as exc:
            await self._fail(message, StatusError(exc.code, exc.title))
            return True
        except e2e.E2EError as exc:  # an unusable bundle or a corrupt session: this message cannot go
            log.error("cannot encrypt message %s for %s: %s", message.id, message.peer, exc)
            await self._fail(message, StatusError(ErrorCode.GENERIC_ASYNC.code, ErrorCode.GENERIC_ASYNC.title))
            return True
        except ChatRemoteError as exc:
            log.warning("cannot prepare message %s yet: %s", message.id, exc)
            self._retry_later(message)
            return False
        except ChatUnavailable as exc:
            log.info("sending paused: %s", exc)
            return False
        self._inflight[message.id] = message
        future.add_done_callback(functools.partial(self._on_reply, message))
        return True

    def _on_reply(self, message: OutboundMessage, future: asyncio.Future[Frame]) -> None:
        self._replies.put_nowait(_Reply(message, future))

    def _retry_later(self, message: OutboundMessage) -> None:
        self._retry_at = time.monotonic() + RETRY_DELAY_S
        self._cursor = min(self._cursor, message.seq - 1)

    async def _encrypt(self, message: OutboundMessage) -> bytes:
        """Envelopes for every device of the recipient, committed with the session states that made them."""
        plaintext = message.content.encode()
        async with self._keys.session_lock(message.peer):
            sessions = await self._key_store.load_sessions(message.peer)
            devices = self._cached_devices(message.peer)
            bundles: dict[int, DeviceBundle] = {}
            if devices is None or any(d not in sessions for d in devices):
                bundles = {b.device_id: b for b in await self._fetch_bundles(message.peer)}
                devices = sorted(bundles)
                self._devices[message.peer] = (time.monotonic() + DEVICE_CACHE_TTL_S, devices)
            states: dict[int, str] = {}
            envelopes: list[Envelope] = []
            for device in devices:
                if device in sessions:
                    state, envelope = await e2e.encrypt(sessions[device], plaintext)
                else:
                    state, envelope = await e2e.encrypt_first(self._keys.identity, bundles[device], plaintext)
                states[device] = state
                envelopes.append(envelope)
            encoded = _envelopes_encoder.encode(envelopes)

            async def persist_txn(conn: AsyncConnection) -> None:
                for device, state in states.items():
                    await self._key_store.save_session_txn(conn, message.peer, device, state)
                await self._messages.set_envelopes_txn(conn, message.id, encoded)

            await self._db.run("outbound.encrypt", persist_txn)
        return encoded

    def _cached_devices(self, peer: WaId) -> list[int] | None:
        entry = self._devices.get(peer)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    async def _fetch_bundles(self, peer: WaId) -> list[DeviceBundle]:
        if len(self._devices) >= DEVICE_CACHE_MAX:
            self._devices.clear()
        try:
            reply = expect(await self._link.request(GetBundles(wa_id=peer)), Bundles)
        except ChatRemoteError as exc:
            if exc.code == ErrorCode.INVALID_USER.code:
                raise RecipientInvalid(exc.code, ErrorCode.INVALID_USER.title) from None
            raise
        if not reply.devices:
            raise RecipientInvalid(ErrorCode.INVALID_USER.code, ErrorCode.INVALID_USER.title)
        return reply.devices

    async def _fail(self, message: OutboundMessage, error: StatusError) -> None:
        log.warning("message %s to %s failed: %d %s", message.id, message.peer, error.code, error.title)
        settings = await self._settings.get_application()

        async def fail_txn(conn: AsyncConnection) -> bool:
            return await self._statuses.advance_txn(conn, settings, message.id, MessageStatus.FAILED, error=error)

        queued = await self._db.run("outbound.failed", fail_txn)
        self.failed += 1
        if queued:
            self._notify_webhooks()

    # --- acks -----------------------------------------------------------------------------------------------

    async def _ack_loop(self) -> None:
        while True:
            replies = [await self._replies.get()]
            while not self._replies.empty():
                replies.append(self._replies.get_nowait())
            try:
                await self._apply(replies)
            except Exception:
                log.exception("could not record %d send replies; the messages will be sent again", len(replies))
                for reply in replies:
                    self._inflight.pop(reply.message.id, None)
                self._cursor = 0

    async def _apply(self, replies: list[_Reply]) -> None:
        sent: list[OutboundMessage] = []
        failed: list[tuple[OutboundMessage, StatusError]] = []
        for reply in replies:
            message = reply.message
            if reply.future.cancelled() or reply.future.exception() is not None:
                self._inflight.pop(message.id, None)  # connection lost: resent after the reconnect
                continue
            frame = reply.future.result()
            if isinstance(frame, Ack):
                sent.append(message)
            elif isinstance(frame, Error) and frame.code in RETRY_LATER:
                log.info("message %s deferred by the network: %d %s", message.id, frame.code, frame.message)
                self._inflight.pop(message.id, None)
                self._retry_later(message)
            elif isinstance(frame, Error):
                failed.append((message, StatusError(frame.code, ErrorCode.from_code(frame.code).title)))
            else:
                log.warning("unexpected %s in reply to Send %s", type(frame).__name__, message.id)
                self._inflight.pop(message.id, None)
        if not sent and not failed:
            self._wake.set()
            return
        settings = await self._settings.get_application()

        async def acks_txn(conn: AsyncConnection) -> bool:
            queued = False
            for message in sent:
                queued |= await self._statuses.advance_txn(conn, settings, message.id, MessageStatus.SENT)
            for message, error in failed:
                failed_status = MessageStatus.FAILED
                queued |= await self._statuses.advance_txn(conn, settings, message.id, failed_status, error=error)
            return queued

        queued = await self._db.run("outbound.acks", acks_txn)
        self.sent += len(sent)
        self.failed += len(failed)
        for message in sent:
            self._inflight.pop(message.id, None)
        for message, _ in failed:
            self._inflight.pop(message.id, None)
        self._wake.set()
        if queued:
            self._notify_webhooks()
