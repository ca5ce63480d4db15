"""The sender: accepted messages → per-device envelopes → ``Send`` → ``sent`` on the network's ack.

Crash safety: a message's envelopes and the session states that produced them are committed together before
the first ``Send``; every later attempt (after a crash or a reconnect) resends those same bytes, so a chain key
is never used twice and the network drops the duplicate by message id.  The sender works in batches of up to
``FETCH`` messages: one query loads the sessions of all their peers, missing bundles are fetched concurrently,
each peer's messages are encrypted in ``seq`` order, and all envelopes + session states of the batch are committed
in ONE transaction before any of them is sent.  Sends are pipelined: up to ``WINDOW`` messages wait for their ack
at once; acks are applied in groups (one transaction each).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.link import ChatLink, ConnState
from coreapp.chat.session import expect
from coreapp.models import MessageStatus, OutboundMessage
from coreapp.services.keys import KeyService
from coreapp.services.statuses import StatusChange, StatusError, StatusWriter
from coreapp.storage.keys import KeyStore
from coreapp.storage.messages import MessageStore
from coreapp.storage.settings import SettingsStore
from shared.db.engine import Database
from shared.errors import ErrorCode
from shared.ids import MessageId, WaId
from shared.shards import ShardSlot
from shared.tasks import TaskSupervisor
from shared.wire import e2e
from shared.wire.frames import Ack, Bundles, DeviceBundle, Envelope, Error, Frame, GetBundles, Send

log = logging.getLogger("openprem.coreapp.outbound")

WINDOW = 512
"""Messages sent and waiting for their ack at most."""
FETCH = 256
"""Messages taken per sender step: encrypted together and committed in one transaction."""
BUNDLE_CONCURRENCY = 32
"""Pre-key bundle requests in flight at once (first messages to new peers)."""
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


_GENERIC = StatusError(ErrorCode.GENERIC_ASYNC.code, ErrorCode.GENERIC_ASYNC.title)


@dataclass(slots=True)
class _Prepared:
    """What ``_encrypt_batch`` made of a batch: committed envelopes, failures, peers to retry later."""

    envelopes: dict[MessageId, bytes] = field(default_factory=dict)
    failed: list[tuple[OutboundMessage, StatusError]] = field(default_factory=list)
    failed_ids: set[MessageId] = field(default_factory=set)

    def fail_all(self, messages: list[OutboundMessage], error: StatusError) -> None:
        for message in messages:
            self.failed.append((message, error))
            self.failed_ids.add(message.id)


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
        *,
        slot: ShardSlot | None = None,
    ) -> None:
        """``slot``: send only to that shard's peers (multiconnect: each shard's owner sends its own)."""
        self._slot = slot
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
        self._rewind_to: int | None = None
        self._peer_retry_at: dict[WaId, float] = {}  # peers whose bundles could not be fetched: not before
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
            if self._rewind_to is not None:
                self._cursor, self._rewind_to = min(self._cursor, self._rewind_to), None
            free = WINDOW - len(self._inflight)
            fetch = min(free, FETCH)
            batch = await self._messages.pending_outbound(self._cursor, fetch, self._slot) if free > 0 else []
            if not batch:
                await self._idle()
                continue
            progress = await self._send_batch(batch)
            if not progress and self._retry_at is not None:  # only deferred messages: do not spin on them
                await self._idle(max(0.0, self._retry_at - time.monotonic()))

    async def _idle(self, timeout_s: float = IDLE_POLL_S) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(min(timeout_s, IDLE_POLL_S)):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _send_batch(self, batch: list[OutboundMessage]) -> bool:
        """Encrypt what needs it (one commit for the whole batch), then send in ``seq`` order, pipelined.

        Returns whether anything was sent or failed (``False``: everything was deferred or sending paused).
        """
        now = time.monotonic()
        for peer, at in list(self._peer_retry_at.items()):
            if at <= now:
                del self._peer_retry_at[peer]
        todo = [m for m in batch if m.id not in self._inflight]
        fresh = [m for m in todo if m.envelopes is None and m.peer not in self._peer_retry_at]
        prepared = _Prepared()
        if fresh:
            try:
                prepared = await self._encrypt_batch(fresh)
            except ChatUnavailable as exc:  # nothing was committed or sent: all of it stays accepted
                log.info("sending paused: %s", exc)
                return False
        progress = False
        cursor = batch[-1].seq
        held: set[WaId] = set()  # peers with a deferred message: their later messages wait too (order)
        for failed_message, error in prepared.failed:
            await self._fail(failed_message, error)
            progress = True
        for message in todo:
            if message.id in prepared.failed_ids:
                continue
            if message.peer in held or message.peer in self._peer_retry_at:
                held.add(message.peer)  # its bundles could not be had: it and everything after it waits
                cursor = min(cursor, message.seq - 1)
                continue
            if self._link.generation != self._generation or self._link.state is not ConnState.READY:
                cursor = min(cursor, message.seq - 1)
                break
            envelopes = message.envelopes or prepared.envelopes[message.id]
            frame = Send(
                message_id=message.id,
                to=message.peer,
                envelopes=_envelopes_decoder.decode(envelopes),
                timestamp=message.timestamp,
            )
            try:
                future = await self._link.send_request(frame)
            except ChatUnavailable as exc:
                log.info("sending paused: %s", exc)
                cursor = min(cursor, message.seq - 1)
                break
            self._inflight[message.id] = message
            future.add_done_callback(functools.partial(self._on_reply, message))
            progress = True
        if held:
            self._retry_at = min(self._peer_retry_at.values(), default=time.monotonic() + RETRY_DELAY_S)
        self._cursor = cursor
        return progress

    def _on_reply(self, message: OutboundMessage, future: asyncio.Future[Frame]) -> None:
        self._replies.put_nowait(_Reply(message, future))

    def _retry_later(self, message: OutboundMessage) -> None:
        self._retry_at = time.monotonic() + RETRY_DELAY_S
        self._rewind(message.seq - 1)

    def _rewind(self, seq: int) -> None:
        """Look at messages after ``seq`` again; applied at the sender's next step (it may be mid-batch now)."""
        self._rewind_to = seq if self._rewind_to is None else min(self._rewind_to, seq)

    async def _encrypt_batch(self, batch: list[OutboundMessage]) -> _Prepared:
        """Envelopes for every device of each message's recipient, committed with the session states that made
        them, in ONE transaction, before anything of the batch is sent.

        The session locks of every peer in the batch are held from loading the sessions until that commit, so an
        inbound decrypt cannot interleave with (and overwrite) a ratchet step taken here.  Messages to one peer
        are encrypted in ``seq`` order, each from the state the previous one left; different peers' bundle
        fetches run concurrently (``BUNDLE_CONCURRENCY``).  Raises ``ChatUnavailable`` (nothing committed).
        """
        by_peer: dict[WaId, list[OutboundMessage]] = {}
        for message in batch:
            by_peer.setdefault(message.peer, []).append(message)
        locks = {id(lock): lock for lock in (self._keys.session_lock(peer) for peer in by_peer)}
        prepared = _Prepared()
        async with contextlib.AsyncExitStack() as stack:
            for _, lock in sorted(locks.items()):  # one global order: no two batches can deadlock
                await stack.enter_async_context(lock)
            sessions = await self._key_store.load_sessions_many(by_peer)
            known: dict[WaId, list[int]] = {}  # peers whose cached devices all have a session
            for peer in by_peer:
                devices = self._cached_devices(peer)
                if devices is not None and all(d in sessions.get(peer, {}) for d in devices):
                    known[peer] = devices
            bundles = await self._fetch_bundles_many([peer for peer in by_peer if peer not in known])
            states: dict[tuple[WaId, int], str] = {}
            for peer, messages in by_peer.items():
                peer_bundles = bundles.get(peer)
                if isinstance(peer_bundles, RecipientInvalid):
                    error = StatusError(peer_bundles.code, peer_bundles.title)
                    prepared.fail_all(messages, error)
                    continue
                if isinstance(peer_bundles, ChatRemoteError):
                    log.warning("cannot prepare %d message(s) for %s yet: %s", len(messages), peer, peer_bundles)
                    self._peer_retry_at[peer] = time.monotonic() + RETRY_DELAY_S
                    continue
                devices = known[peer] if peer_bundles is None else sorted(peer_bundles)
                current = dict(sessions.get(peer, {}))
                for message in messages:
                    plaintext = message.content.encode()
                    try:
                        made: dict[int, str] = {}
                        envelopes: list[Envelope] = []
                        for device in devices:
                            if device in current:
                                state, envelope = await e2e.encrypt(current[device], plaintext)
                            else:
                                assert peer_bundles is not None
                                state, envelope = await e2e.encrypt_first(
                                    self._keys.identity, peer_bundles[device], plaintext
                                )
                            made[device] = state
                            envelopes.append(envelope)
                    except e2e.E2EError as exc:  # an unusable bundle or a corrupt session: this message cannot go
                        log.error("cannot encrypt message %s for %s: %s", message.id, peer, exc)
                        prepared.fail_all([message], _GENERIC)
                        continue
                    current.update(made)  # the next message to this peer continues from here
                    for device, state in made.items():
                        states[(peer, device)] = state
                    prepared.envelopes[message.id] = _envelopes_encoder.encode(envelopes)

            if prepared.envelopes:

                async def persist_txn(conn: AsyncConnection) -> None:
                    await self._key_store.save_sessions_txn(conn, states)
                    await self._messages.set_envelopes_many_txn(conn, prepared.envelopes)

                await self._db.run("outbound.encrypt", persist_txn)
        return prepared

    async def _fetch_bundles_many(
        self, peers: list[WaId]
    ) -> dict[WaId, dict[int, DeviceBundle] | RecipientInvalid | ChatRemoteError]:
        """Each peer's bundles by device (caching its device list), or why not; ``ChatUnavailable`` propagates."""
        if len(self._devices) + len(peers) >= DEVICE_CACHE_MAX:
            self._devices.clear()
        limit = asyncio.Semaphore(BUNDLE_CONCURRENCY)

        async def one(peer: WaId) -> dict[int, DeviceBundle] | RecipientInvalid | ChatRemoteError:
            async with limit:
                try:
                    found = {b.device_id: b for b in await self._fetch_bundles(peer)}
                except (RecipientInvalid, ChatRemoteError) as exc:
                    return exc
            self._devices[peer] = (time.monotonic() + DEVICE_CACHE_TTL_S, sorted(found))
            return found

        results = await asyncio.gather(*(one(peer) for peer in peers))
        return dict(zip(peers, results, strict=True))

    def _cached_devices(self, peer: WaId) -> list[int] | None:
        entry = self._devices.get(peer)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    async def _fetch_bundles(self, peer: WaId) -> list[DeviceBundle]:
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
                self._rewind(0)

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

        changes = [StatusChange(m.id, MessageStatus.SENT) for m in sent]
        changes += [StatusChange(m.id, MessageStatus.FAILED, error=error) for m, error in failed]

        async def acks_txn(conn: AsyncConnection) -> bool:
            return await self._statuses.advance_many_txn(conn, settings, changes)

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
