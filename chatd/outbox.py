"""Pushes to businesses: every ``Deliver``/``Receipt`` waits here, persisted, until the business acks it.

Each push gets a server id (the frame id the business acks).  While a business is logged in its session is
attached and new pushes are written to it at once; otherwise they wait.  With multiconnect a number has one
session per shard, and a push goes to the shard of its peer (``shared.shards.shard_of``: the phone that sent the
message, receipt or identity change) under the shard count the number logged in with last.  On login the whole
unacked backlog (of the shard) is written in order, then ``OfflineDone``; pushes written to a connection that
dropped before the ack are simply written again to the next one, so nothing is lost and the client drops what
it already stored by id.

Pushes due later (a phone's delivered/read receipts) are persisted timers on the sandbox clock, so they survive
a restart and fire early when the clock is advanced.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from typing import Protocol

import msgspec

from chatd.clock import Clock
from chatd.store import Store
from shared.shards import shard_of
from shared.tasks import TaskSupervisor
from shared.wire.frames import Deliver, IdentityChanged, OfflineDone, Receipt

log = logging.getLogger("openprem.chatd.outbox")

Push = Deliver | Receipt | IdentityChanged
_PUSH, _TIMER = "push", "timer"


class Timer(msgspec.Struct):
    due: float
    business: str
    frame: Push


_push_decoder = msgspec.json.Decoder(Push)
_timer_decoder = msgspec.json.Decoder(Timer)


def peer_of(frame: Push) -> str:
    """The phone a push is about: what decides its shard."""
    match frame:
        case Deliver():
            return frame.sender
        case Receipt():
            return frame.recipient
        case IdentityChanged():
            return frame.wa_id


class Sink(Protocol):
    """A live business connection."""

    async def push(self, frame: Push | OfflineDone) -> None: ...


def _key(business: str, server_id: int) -> str:
    return f"{business}/{server_id:016d}"


class Outbox:
    def __init__(self, store: Store, clock: Clock, tasks: TaskSupervisor) -> None:
        self._store = store
        self._clock = clock
        self._tasks = tasks
        self._pending: dict[str, dict[int, Push]] = {}
        self._sinks: dict[tuple[str, int], Sink] = {}  # (business, shard)
        self._shards: dict[str, int] = {}  # the shard count each business last attached with
        self._locks: dict[str, asyncio.Lock] = {}
        self._timers: dict[int, Timer] = {}
        self._heap: list[tuple[float, int]] = []
        self._next_id = 1
        self._wake = asyncio.Event()
        clock.on_advance(self._wake.set)

    async def load(self) -> None:
        for key, body in await self._store.load(_PUSH):
            business, _, sid = key.rpartition("/")
            frame = _push_decoder.decode(body)
            self._pending.setdefault(business, {})[int(sid)] = frame
            self._next_id = max(self._next_id, int(sid) + 1)
        for key, body in await self._store.load(_TIMER):
            timer = _timer_decoder.decode(body)
            self._timers[int(key)] = timer
            heapq.heappush(self._heap, (timer.due, int(key)))
            self._next_id = max(self._next_id, int(key) + 1)

    def start(self) -> None:
        self._tasks.spawn_forever("outbox-timers", self._run_timers)

    def pending(self, business: str, shard: int | None = None) -> list[Push]:
        """The business's unacked pushes (of one shard only, when given)."""
        frames = list(self._pending.get(business, {}).values())
        if shard is None:
            return frames
        return [f for f in frames if self._shard_of(business, f) == shard]

    def _shard_of(self, business: str, frame: Push) -> int:
        shards = self._shards.get(business, 1)
        return shard_of(peer_of(frame), shards) if shards > 1 else 0

    def _lock(self, business: str) -> asyncio.Lock:
        return self._locks.setdefault(business, asyncio.Lock())

    def _new_id(self) -> int:
        sid, self._next_id = self._next_id, self._next_id + 1
        return sid

    async def enqueue(self, business: str, frame: Push) -> int:
        """Persist a push and write it to the business if it is connected; returns its server id."""
        sid = self._new_id()
        frame = msgspec.structs.replace(frame, id=sid)
        self._pending.setdefault(business, {})[sid] = frame
        self._store.put(_PUSH, _key(business, sid), msgspec.json.encode(frame).decode())
        shard = self._shard_of(business, frame)
        async with self._lock(business):
            sink = self._sinks.get((business, shard))
            if sink is not None:
                await self._write(business, shard, sink, frame)
        return sid

    def schedule(self, business: str, frame: Push, delay_s: float) -> None:
        """Enqueue ``frame`` after ``delay_s`` of sandbox time."""
        tid = self._new_id()
        timer = Timer(due=self._clock.now() + delay_s, business=business, frame=frame)
        self._timers[tid] = timer
        heapq.heappush(self._heap, (timer.due, tid))
        self._store.put(_TIMER, str(tid), msgspec.json.encode(timer).decode())
        self._wake.set()

    def ack(self, business: str, server_id: int) -> bool:
        """The business stored the push: forget it.  False for an id it was never sent."""
        frame = self._pending.get(business, {}).pop(server_id, None)
        if frame is None:
            return False
        self._store.delete(_PUSH, _key(business, server_id))
        return True

    async def attach(self, business: str, shard: int, shards: int, sink: Sink) -> int:
        """Write the shard's unacked backlog and ``OfflineDone``, then route the shard's new pushes to ``sink``."""
        async with self._lock(business):
            if self._shards.get(business, 1) != shards:
                self._shards[business] = shards
                for key in [k for k in self._sinks if k[0] == business]:
                    del self._sinks[key]  # sessions of the old count are being closed by the router
            backlog = self.pending(business, shard)
            for frame in backlog:
                await sink.push(frame)
            await sink.push(OfflineDone(count=len(backlog)))
            self._sinks[(business, shard)] = sink
        return len(backlog)

    def detach(self, business: str, shard: int, sink: Sink) -> None:
        if self._sinks.get((business, shard)) is sink:
            del self._sinks[(business, shard)]

    async def _write(self, business: str, shard: int, sink: Sink, frame: Push) -> None:
        try:
            await sink.push(frame)
        except (ConnectionError, OSError) as exc:
            log.info("push %d to %s not written (%s); it stays pending", frame.id, business, exc)
            self.detach(business, shard, sink)

    async def _run_timers(self) -> None:
        while True:
            self._wake.clear()
            while self._heap and self._heap[0][0] <= self._clock.now():
                _, tid = heapq.heappop(self._heap)
                timer = self._timers.pop(tid, None)
                if timer is None:
                    continue
                self._store.delete(_TIMER, str(tid))
                await self.enqueue(timer.business, timer.frame)
            timeout = None if not self._heap else max(0.0, self._heap[0][0] - self._clock.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
