"""The chat connection state machine: DISCONNECTED → CONNECTING → AUTHENTICATING → SYNCING → READY.

One supervised task runs it forever: connect (port, then fallback port), log in by signing the server's nonce,
sync (templates, offline backlog up to ``OfflineDone``, pre-key top-up), then READY until the session drops;
then reconnect after a capped, jittered backoff (at most 30 s, so the end of an API maintenance is noticed soon).
A ``Kick`` with ``conflict`` (another instance took over the number) or an expired client version (login refused
with 1005: the app expired) ends it for good: critical log, no reconnect loop.

Network time: ``LoginOk.server_time`` and ``Pong.server_time`` keep an offset to the network's clock, and
``server_now()`` is what timers that depend on the network read (the template cache age): in the sandbox the
network's clock can jump forward.  Each answered ping also runs the tick steps (``add_tick``) and checks that no
pipelined request (a ``Send``) has waited longer than ``reply_timeout_s`` for its reply; one that has (a lost ack)
closes the session, so it is sent again after the reconnect and the network drops the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from coreapp.chat.backoff import Backoff
from coreapp.chat.dispatch import MAX_GROUP, PushDispatcher, PushFailed
from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.link import ConnState
from coreapp.chat.session import ChatSession, expect
from coreapp.chat.transport import open_channel
from shared.config import ChatSettings
from shared.errors import ErrorCode
from shared.ids import WaId
from shared.shards import ShardSlot
from shared.tasks import TaskSupervisor
from shared.wire.frames import Ack, Challenge, Frame, Hello, Kick, Login, LoginOk, OfflineDone, Ping, Pong

log = logging.getLogger("openprem.coreapp.chat")

CONFLICT_MESSAGE = "Conflict: Detected multiple instances with the same number"
PUSH_QUEUE_SIZE = 10_000
SyncStep = Callable[[LoginOk], Awaitable[None]]
TickStep = Callable[[float], Awaitable[None]]
MAX_BACKOFF_S = 30.0
Signer = Callable[[bytes], bytes]


class ChatConnection:
    def __init__(
        self,
        settings: ChatSettings,
        supervisor: TaskSupervisor,
        wa_id: WaId,
        signer: Signer,
        dispatcher: PushDispatcher,
        *,
        slot: ShardSlot | None = None,
        may_act: Callable[[], bool] | None = None,
    ) -> None:
        """``slot``: the shard this connection serves (multiconnect; the network keeps one connection per shard);
        ``may_act``: whether this node still holds it (checked before connecting and at every frame)."""
        self._slot = slot
        self._may_act = may_act
        self._settings = settings
        self._supervisor = supervisor
        self._wa_id = wa_id
        self._signer = signer
        self._dispatcher = dispatcher
        self._before_drain: list[SyncStep] = []
        self._after_drain: list[SyncStep] = []
        self._ready_listeners: list[Callable[[], None]] = []
        self._ticks: list[TickStep] = []
        self._server_offset = 0.0
        self._state = ConnState.DISCONNECTED
        self._ready = asyncio.Event()
        self._session: ChatSession | None = None
        self._generation = 0
        self._fatal: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(0.5, MAX_BACKOFF_S)
        self._offline_done = asyncio.Event()
        self._pushes: asyncio.Queue[Frame] = asyncio.Queue(PUSH_QUEUE_SIZE)

    # --- wiring ---------------------------------------------------------------------------------------------

    def add_sync_step(self, step: SyncStep, *, after_offline_drain: bool = False) -> None:
        (self._after_drain if after_offline_drain else self._before_drain).append(step)

    def add_ready_listener(self, listener: Callable[[], None]) -> None:
        self._ready_listeners.append(listener)

    def add_tick(self, step: TickStep) -> None:
        """Run ``step(server_now)`` after every answered ping (periodic work on network time)."""
        self._ticks.append(step)

    # --- network time ---------------------------------------------------------------------------------------

    def server_now(self) -> float:
        """The network's clock (epoch seconds) as last reported, advanced by local time since."""
        return time.time() + self._server_offset

    def _saw_server_time(self, server_time: float) -> None:
        if server_time > 0:
            self._server_offset = server_time - time.time()

    @property
    def reply_timeout_s(self) -> float:
        """How long a request may wait for its reply before the session counts as broken (2 ping intervals)."""
        return max(2.0, 2 * self._settings.ping_interval_s)

    # --- ChatLink -------------------------------------------------------------------------------------------

    @property
    def state(self) -> ConnState:
        return self._state

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def fatal_error(self) -> str | None:
        """Why the connection gave up for good (conflict, expired client), if it did."""
        return self._fatal

    @property
    def port(self) -> int | None:
        return self._session.port if self._session is not None else None

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def request(self, frame: Frame, timeout_s: float = 30.0) -> Frame:
        return await self._live_session().request(frame, timeout_s)

    async def send_request(self, frame: Frame) -> asyncio.Future[Frame]:
        return await self._live_session().send_request(frame)

    async def ack(self, push: Frame) -> None:
        await self._live_session().reply(Ack(id=push.id))

    def _live_session(self) -> ChatSession:
        session = self._session
        if session is None or session.closed:
            reason = session.close_reason if session is not None else "no session"
            raise ChatUnavailable(f"chat connection is {self._state.value} ({reason})")
        return session

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = self._supervisor.spawn("chat-connection", self._run())

    async def stop(self) -> None:
        self._fatal = self._fatal or "stopped"
        if self._session is not None:
            await self._session.close("shutting down")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._set_state(ConnState.DISCONNECTED)

    def _set_state(self, state: ConnState) -> None:
        if state is self._state:
            return
        log.info("chat connection: %s -> %s", self._state.value, state.value)
        self._state = state
        if state is ConnState.READY:
            self._ready.set()
            for listener in self._ready_listeners:
                listener()
        else:
            self._ready.clear()

    async def _run(self) -> None:
        while self._fatal is None:
            self._set_state(ConnState.CONNECTING)
            reached_ready = False
            try:
                if self._may_act is not None and not self._may_act():
                    raise ChatUnavailable("this node does not hold its shard: not connecting")
                channel = await open_channel(self._settings, self._may_act)
                session = ChatSession(channel, self._supervisor, self._on_push)
                reached_ready = await self._run_session(session)
            except ChatRemoteError as exc:
                self._login_refused(exc)
            except ChatUnavailable as exc:
                log.warning("chat connection lost: %s", exc)
            except Exception:
                log.exception("chat session failed; reconnecting")
            finally:
                self._session = None
                self._set_state(ConnState.DISCONNECTED)
            if self._fatal is not None:
                break
            if reached_ready:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("chat reconnecting in %.1fs", delay)
            await asyncio.sleep(delay)
        if self._fatal != "stopped":
            log.critical("chat connection stopped for good: %s", self._fatal)

    def _login_refused(self, exc: ChatRemoteError) -> None:
        code = exc.error_code
        if code is ErrorCode.ACCESS_DENIED:  # 1005: this client version expired; reconnecting cannot help
            self._fatal = f"app expired: client version {self._settings.client_version} ({exc.message})"
        elif code is ErrorCode.API_SERVICE:
            log.error("login refused: error code 2, API service unavailable (maintenance): %s", exc.message)
        else:
            log.error("login refused: %s", exc)

    async def _run_session(self, session: ChatSession) -> bool:
        """Log in, sync, serve until the session ends; whether it reached READY."""
        self._generation += 1
        self._offline_done = asyncio.Event()
        self._pushes = asyncio.Queue(PUSH_QUEUE_SIZE)
        self._session = session
        session.start()
        workers = [
            self._supervisor.spawn("chat-pushes", self._push_worker(self._pushes)),
            self._supervisor.spawn("chat-ping", self._ping_loop(session)),
        ]
        try:
            self._set_state(ConnState.AUTHENTICATING)
            slot = self._slot or ShardSlot(0, 1)
            hello = Hello(
                wa_id=self._wa_id, client_version=self._settings.client_version, shard=slot.shard, shards=slot.shards
            )
            challenge = expect(await session.request(hello), Challenge)
            login_ok = expect(await session.request(Login(signature=self._signer(challenge.nonce))), LoginOk)
            self._saw_server_time(login_ok.server_time)
            fallback = session.port != self._settings.port
            log.info("logged in as %s on port %d%s", self._wa_id, session.port, " (fallback)" if fallback else "")
            self._set_state(ConnState.SYNCING)
            for step in self._before_drain:
                await step(login_ok)
            await self._wait_offline_drain(session)
            for step in self._after_drain:
                await step(login_ok)
            if session.closed:
                raise ChatUnavailable(session.close_reason)
            self._set_state(ConnState.READY)
            await session.wait_closed()
            level = logging.INFO if self._fatal == "stopped" else logging.WARNING
            log.log(level, "chat session ended: %s", session.close_reason)
            return True
        finally:
            await session.close("session over")
            for task in workers:
                task.cancel()

    async def _wait_offline_drain(self, session: ChatSession) -> None:
        """Wait for the end-of-backlog marker, a closed session (checked each second) or the timeout."""
        timeout = self._settings.offline_drain_timeout_s
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._offline_done.is_set() and not session.closed:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                log.warning("offline messages not drained after %.0fs; going ready anyway", timeout)
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(1.0, remaining)):
                    await self._offline_done.wait()

    # --- pushes ---------------------------------------------------------------------------------------------

    def _on_push(self, frame: Frame) -> None:
        """Called by the reader: act on a kick at once, queue everything else in arrival order."""
        if isinstance(frame, Kick):
            self._on_kick(frame)
            return
        try:
            self._pushes.put_nowait(frame)
        except asyncio.QueueFull:
            log.error("push queue full; dropped a %s (left unacked, the network replays it)", type(frame).__name__)

    def _on_kick(self, kick: Kick) -> None:
        if kick.conflict:
            log.critical("%s (%s)", CONFLICT_MESSAGE, kick.reason)
            self._fatal = CONFLICT_MESSAGE
        else:
            log.warning("kicked by the network: %s", kick.reason)
        session = self._session
        if session is not None:
            self._supervisor.spawn("chat-kick-close", session.close(f"kicked: {kick.reason}"))

    async def _push_worker(self, queue: asyncio.Queue[Frame]) -> None:
        held: Frame | None = None  # taken from the queue while grouping, not of the group's kind
        while True:
            frame, held = (held, None) if held is not None else (await queue.get(), None)
            if isinstance(frame, OfflineDone):
                log.info("offline backlog drained (%d pushed)", frame.count)
                self._offline_done.set()
                continue
            group: list[Frame] = [frame]
            if self._dispatcher.groups(type(frame)):
                # Whatever of the same kind already waits behind it (in arrival order) goes in the same group.
                while len(group) < MAX_GROUP and not queue.empty():
                    following = queue.get_nowait()
                    if type(following) is not type(frame):
                        held = following
                        break
                    group.append(following)
            try:
                await self._dispatcher.dispatch_group(group)
            except PushFailed as exc:
                session = self._session
                log.error("%s; reconnecting so the network replays it", exc)
                if session is not None:
                    await session.close("a push could not be handled")
                return

    async def _ping_loop(self, session: ChatSession) -> None:
        interval = self._settings.ping_interval_s
        while not session.closed:
            await asyncio.sleep(interval)
            try:
                pong = await session.request(Ping(), timeout_s=max(5.0, interval / 2))
            except ChatUnavailable as exc:
                log.warning("ping failed (%s); reconnecting", exc)
                await session.close("ping timeout")
                return
            except ChatRemoteError as exc:
                log.warning("ping answered with an error: %s", exc)
                continue
            if isinstance(pong, Pong):
                self._saw_server_time(pong.server_time)
            waited = session.oldest_unanswered_s()
            if waited > self.reply_timeout_s:
                log.warning("a request got no reply for %.0fs (lost by the network?); reconnecting to resend", waited)
                await session.close("reply timeout")
                return
            if self._state is ConnState.READY:
                await self._run_ticks()

    async def _run_ticks(self) -> None:
        now = self.server_now()
        for step in self._ticks:
            try:
                await step(now)
            except (ChatUnavailable, ChatRemoteError) as exc:
                log.warning("periodic step failed: %s", exc)
            except Exception:
                log.exception("periodic step failed")
