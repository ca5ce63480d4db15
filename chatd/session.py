"""One chat connection: framing, the pre-auth/login state machine, and dispatch to the router.

``PREAUTH`` accepts registration and ``Hello``; ``Hello`` leads to ``CHALLENGED`` (a random nonce the business
signs with its identity key); a good ``Login`` makes the session ``READY`` and the router's.  A frame that does
not decode is logged and answered with ``Error``; the connection carries on unless the length prefix itself is
unusable (then there is no way to find the next frame, so it closes).

Faults act here (``chatd.faults``): lost or delayed ``Send`` acks, doubled or corrupted pushes, a stalled offline
backlog, refused logins and API maintenance; ``chatd.limits`` refuses expired client builds at login.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets

import msgspec

from chatd.clock import Clock
from chatd.errors import Refused
from chatd.faults import Faults
from chatd.limits import Limits
from chatd.media import MediaStore
from chatd.registration import Registrar
from chatd.router import Router
from shared.errors import ErrorCode
from shared.shards import SHARD_COUNTS
from shared.tasks import TaskSupervisor
from shared.wire import codec, e2e
from shared.wire.frames import (
    Ack,
    Challenge,
    Deliver,
    Error,
    Frame,
    GetMediaConn,
    Hello,
    IdentityChanged,
    Kick,
    Login,
    LoginOk,
    MediaConn,
    OfflineDone,
    Receipt,
    RegisterRequest,
    Send,
    VerifyRequest,
)

log = logging.getLogger("openprem.chatd.session")

GARBAGE = b"\xc1" * 24
"""A well-framed body no MessagePack decoder accepts (0xc1 is never used): what ``corrupt_frame`` writes."""


def _salvage_id(body: bytes) -> int:
    """The id of a frame that did not decode, when its map still has one, so the sender's request fails fast."""
    try:
        raw = msgspec.msgpack.decode(body)
    except msgspec.DecodeError:
        return 0
    frame_id = raw.get("id") if isinstance(raw, dict) else None
    return frame_id if isinstance(frame_id, int) and not isinstance(frame_id, bool) else 0


class State(enum.Enum):
    PREAUTH = "preauth"
    CHALLENGED = "challenged"
    READY = "ready"
    CLOSED = "closed"


class Session:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        router: Router,
        registrar: Registrar,
        faults: Faults,
        tasks: TaskSupervisor,
        clock: Clock,
        media: MediaStore | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._media = media
        self._limits = limits
        self._reader = reader
        self._writer = writer
        self._router = router
        self._registrar = registrar
        self._faults = faults
        self._tasks = tasks
        self._write_lock = asyncio.Lock()
        self._written = 0
        self._nonce = b""
        self._claimed: Hello | None = None
        self._attach: asyncio.Task[None] | None = None
        self._clock = clock
        self.state = State.PREAUTH
        self.wa_id = ""
        self.device_id = 0
        self.shard, self.shards = 0, 1
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    # --- writing (also the router's and outbox's view of this connection) --------------------------------

    async def send(self, frame: Frame) -> None:
        await self._write(codec.encode(frame))

    async def _write(self, data: bytes) -> None:
        async with self._write_lock:
            if self.state is State.CLOSED:
                raise ConnectionResetError("session closed")
            limit = self._faults.drop_after()
            if limit is not None and self._written >= limit:
                log.info("fault drop_after=%d: closing %s (%s)", limit, self.peer, self.wa_id or "not logged in")
                self.close()
                raise ConnectionResetError("dropped by fault injection")
            self._writer.write(data)
            self._written += 1
            await self._writer.drain()

    async def push(self, frame: Deliver | Receipt | IdentityChanged | OfflineDone) -> None:
        if isinstance(frame, OfflineDone):
            await self.send(frame)
            return
        if self._faults.corrupt_push():
            log.warning("fault corrupt_frame: push %d to +%s written as garbage", frame.id, self.wa_id)
            await self._write(len(GARBAGE).to_bytes(4, "big") + GARBAGE)
            return
        await self.send(frame)
        if self._faults.duplicate_pushes():
            log.info("fault duplicate_pushes: push %d to +%s written twice", frame.id, self.wa_id)
            await self.send(frame)

    async def kick(self, reason: str, *, conflict: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait_for(self.send(Kick(reason=reason, conflict=conflict)), 5.0)
        self.close()

    def close(self) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.READY:
            self._router.logout(self)
        self.state = State.CLOSED
        if self._attach is not None:
            self._attach.cancel()
        self._writer.close()

    # --- reading -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the peer leaves, we close it, or a fault drops it."""
        try:
            while self.state is not State.CLOSED:
                try:
                    body = await codec.read_body(self._reader)
                except codec.FrameError as exc:  # unusable length prefix: cannot resynchronise
                    log.warning("%s: %s; closing", self.peer, exc)
                    await self._reply_error(0, ErrorCode.INVALID_REQUEST.code, str(exc))
                    break
                try:
                    frame = codec.decode(body)
                except codec.FrameError as exc:
                    log.warning("%s: dropped a bad frame: %s", self.peer, exc)
                    message = f"bad frame dropped: {exc}"
                    await self._reply_error(_salvage_id(body), ErrorCode.INVALID_REQUEST.code, message)
                    continue
                await self._dispatch(frame)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)

    async def _dispatch(self, frame: Frame) -> None:
        try:
            reply = await self._handle(frame)
        except Refused as refusal:
            await self._reply_error(frame.id, refusal.code, refusal.message)
            if refusal.close:
                self.close()
            return
        except (ConnectionError, OSError):
            raise
        except Exception:
            log.exception("%s: handling %s failed", self.peer, type(frame).__name__)
            await self._reply_error(frame.id, ErrorCode.INTERNAL.code, "internal error")
            return
        if reply is None:
            return
        if isinstance(frame, Send) and isinstance(reply, Ack):
            if self._faults.lose_ack():
                log.warning("fault lose_acks: ack of %s to +%s not sent", frame.message_id, self.wa_id)
                return
            delay = self._faults.ack_delay()
            if delay:
                self._tasks.spawn(f"delayed-ack:{frame.message_id}", self._send_later(reply, delay))
                return
        await self.send(reply)

    async def _send_later(self, frame: Frame, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        with contextlib.suppress(ConnectionError, OSError):
            await self.send(frame)

    async def _reply_error(self, frame_id: int, code: int, message: str) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.send(Error(id=frame_id, code=code, message=message))

    async def _handle(self, frame: Frame) -> Frame | None:
        if self.state is State.READY:
            if isinstance(frame, GetMediaConn):
                return self._media_conn(frame.id)
            return await self._router.handle(self, frame)
        match frame:
            case RegisterRequest():
                return await self._registrar.register(frame)
            case VerifyRequest():
                return await self._registrar.verify(frame)
            case Hello():
                return self._hello(frame)
            case Login() if self.state is State.CHALLENGED:
                await self._login(frame)
                return None
            case _:
                raise Refused(401, f"{type(frame).__name__} needs a logged-in session: send Hello first")

    def _hello(self, frame: Hello) -> Challenge:
        wa_id = frame.wa_id.lstrip("+")
        if self._router.identity_key(wa_id) is None:
            raise Refused(401, f"{frame.wa_id} is not registered", close=True)
        if frame.shards not in SHARD_COUNTS or not 0 <= frame.shard < frame.shards:
            raise Refused(
                ErrorCode.INVALID_PARAMETER, f"shard {frame.shard} of {frame.shards} is not valid", close=True
            )
        self._claimed = frame
        self._nonce = secrets.token_bytes(32)
        self.state = State.CHALLENGED
        return Challenge(id=frame.id, nonce=self._nonce)

    async def _login(self, frame: Login) -> None:
        hello = self._claimed
        assert hello is not None
        wa_id = hello.wa_id.lstrip("+")
        key = self._router.identity_key(wa_id)
        if key is None or not e2e.verify_signature(key, self._nonce, frame.signature):
            log.warning("%s: login as +%s refused: bad signature", self.peer, wa_id)
            raise Refused(401, "login refused: signature does not match the registered identity key", close=True)
        self._refusals(wa_id, hello.client_version)
        self.wa_id, self.device_id = wa_id, hello.device_id
        self.shard, self.shards = hello.shard, hello.shards
        self.state = State.READY
        await self._router.login(self)
        remaining = self._router.prekeys_remaining(wa_id)
        media = self._media_conn(frame.id)
        login_ok = LoginOk(
            id=frame.id,
            server_time=self._clock.now(),
            prekeys_remaining=remaining,
            media_token=media.token,
            media_port=media.port,
            media_token_expires_at=media.expires_at,
        )
        await self.send(login_ok)
        shard = f", shard {hello.shard} of {hello.shards}" if hello.shards > 1 else ""
        log.info("%s logged in as +%s (client %s%s)", self.peer, wa_id, hello.client_version, shard)
        # The backlog is written by its own task so this loop keeps reading the business's acks meanwhile.
        self._attach = self._tasks.spawn(f"attach:{wa_id}", self._attach_backlog(self._faults.offline_stall()))

    def _media_conn(self, frame_id: int) -> MediaConn:
        """A new media-host token for this business (at login, and whenever it asks: tokens expire in 7 days)."""
        if self._media is None or not self.wa_id:
            return MediaConn(id=frame_id, token="")
        token, expires_at = self._media.grant(self.wa_id)
        return MediaConn(id=frame_id, token=token, port=self._media.port, expires_at=expires_at)

    async def _attach_backlog(self, stall_s: float) -> None:
        if stall_s:
            log.warning("fault stall_offline: +%s waits %.1fs for its offline backlog", self.wa_id, stall_s)
            await asyncio.sleep(stall_s)
        await self._router.attach(self)

    def _refusals(self, wa_id: str, client_version: str) -> None:
        """Logins the network turns away although the signature is good: maintenance, faults, expired builds."""
        left = self._faults.maintenance_left()
        if left:
            log.warning("%s: login as +%s refused: API maintenance (%.0fs left)", self.peer, wa_id, left)
            raise Refused(ErrorCode.API_SERVICE, f"API maintenance: service unavailable for {left:.0f}s", close=True)
        code = self._faults.refuse_login()
        if code is not None:
            log.warning("fault refuse_login: login as +%s refused with %d", wa_id, code)
            raise Refused(code, "login refused (fault injection)", close=True)
        if self._limits is not None:
            try:
                self._limits.check_client(client_version)
            except Refused as refusal:
                log.warning("%s: login as +%s refused: %s", self.peer, wa_id, refusal.message)
                raise
