"""The accept path of ``messages.send``: commit the message (status ``accepted``), then hand out its id.

Concurrent sends are grouped: one worker takes whatever is queued (up to ``BATCH``) and commits it in one
transaction, then resolves every caller's future.  An id is only returned after its row is committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import NewMessage
from coreapp.storage.messages import MessageStore
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.ids import MessageId
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.outbound")

BATCH = 200
QUEUE_SIZE = 2_000

_Pending = tuple[NewMessage, asyncio.Future[MessageId]]


class MessageAcceptor:
    def __init__(
        self, db: Database, messages: MessageStore, supervisor: TaskSupervisor, on_committed: Callable[[], None]
    ) -> None:
        self._db = db
        self._messages = messages
        self._supervisor = supervisor
        self._on_committed = on_committed
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = self._supervisor.spawn_forever("messages.accept", self._run)

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5.0)
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(ApiError(ErrorCode.NOT_READY, "shutting down"))

    async def accept(self, message: NewMessage) -> MessageId:
        """Queue ``message`` for the next group commit and return its id once committed."""
        if self._stopped:  # nothing would drain the queue: refuse now rather than at the caller's timeout
            raise ApiError(ErrorCode.NOT_READY, "shutting down")
        future: asyncio.Future[MessageId] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((message, future))
        except asyncio.QueueFull:
            raise ApiError(ErrorCode.OVERLOADED, "too many messages waiting to be stored") from None
        return await future

    async def _run(self) -> None:
        batch: list[_Pending] = []
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < BATCH and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._commit(batch)
                batch = []
        finally:
            for _, future in batch:  # cancelled mid-commit: the callers learn it failed
                if not future.done():
                    future.set_exception(ApiError(ErrorCode.NOT_READY, "shutting down"))

    async def _commit(self, batch: list[_Pending]) -> None:
        live = [(message, future) for message, future in batch if not future.cancelled()]
        rows = [message for message, _ in live]

        async def insert_txn(conn: AsyncConnection) -> None:
            await self._messages.insert_many_txn(conn, rows)

        try:
            await self._db.run("messages.accept", insert_txn)
        except Exception:
            log.exception("could not store %d accepted messages", len(rows))
            for _, future in live:
                if not future.done():
                    future.set_exception(ApiError(ErrorCode.DATABASE_ERROR))
            return
        for message, future in live:
            if not future.done():
                future.set_result(message.id)
        self._on_committed()
