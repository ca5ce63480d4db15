"""The accept path of ``messages.send``: commit the message (status ``accepted``), then hand out its id.

Concurrent sends are grouped: one worker takes whatever is queued (up to ``BATCH``) and commits it in one
transaction, then resolves every caller's future.  An id is only returned after its row is committed.

A keyed send (``Idempotency-Key``) stores its key in that same transaction, so a key on record always names a
stored message.  The transaction reads the batch's keys first: a key already stored (or earlier in the batch)
with the same request answers that message's id and its new message is dropped; with another request it is
1004.  Two transactions storing one key at once (coreapps sharing a database) end in a unique-key violation for
one of them, which is then run again and finds the other's key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import IdempotencyClaim, IdempotencyRecord, NewMessage
from coreapp.storage.idempotency import IdempotencyStore
from coreapp.storage.leases import StaleEpoch
from coreapp.storage.messages import MessageStore
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.idempotency import HEADER, TTL
from shared.ids import MessageId
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.outbound")

BATCH = 200
QUEUE_SIZE = 2_000
KEY_RACE_ATTEMPTS = 3
"""Runs of a batch whose keys another transaction stored meanwhile (each run reads them again)."""


@dataclass(frozen=True, slots=True)
class _Pending:
    message: NewMessage
    claim: IdempotencyClaim | None
    future: asyncio.Future[MessageId]


def _replay(record: IdempotencyRecord, claim: IdempotencyClaim) -> MessageId | ApiError:
    """What a send whose key is on record gets: the stored id for the same request, else 1004."""
    if record.request_sha256 == claim.request_sha256:
        return record.message_id
    return ApiError(
        ErrorCode.RESOURCE_EXISTS,
        f"this {HEADER} was used within {TTL.total_seconds() / 3600:.0f} h for another request; use a new key "
        "for a new message",
    )


class MessageAcceptor:
    def __init__(
        self,
        db: Database,
        messages: MessageStore,
        keys: IdempotencyStore,
        supervisor: TaskSupervisor,
        on_committed: Callable[[], None],
    ) -> None:
        self._db = db
        self._messages = messages
        self._keys = keys
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
            future = self._queue.get_nowait().future
            if not future.done():
                future.set_exception(ApiError(ErrorCode.NOT_READY, "shutting down"))

    async def replay(self, claim: IdempotencyClaim) -> MessageId | None:
        """The id of the message a key already stored (1004 if it stored another request); ``None`` when the key
        is new.  Read before anything is composed, so a retry sends nothing, even while the chat is down."""
        record = await self._keys.find(claim.key_sha256, datetime.now(UTC) - TTL)
        if record is None:
            return None
        outcome = _replay(record, claim)
        if isinstance(outcome, ApiError):
            raise outcome
        return outcome

    async def accept(self, message: NewMessage, claim: IdempotencyClaim | None = None) -> MessageId:
        """Queue ``message`` for the next group commit and return its id once committed.  With ``claim``, the id
        may be another message's: the one a concurrent send with the same key and request stored."""
        if self._stopped:  # nothing would drain the queue: refuse now rather than at the caller's timeout
            raise ApiError(ErrorCode.NOT_READY, "shutting down")
        future: asyncio.Future[MessageId] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(message, claim, future))
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
            for pending in batch:  # cancelled mid-commit: the callers learn it failed
                if not pending.future.done():
                    pending.future.set_exception(ApiError(ErrorCode.NOT_READY, "shutting down"))

    async def _commit(self, batch: list[_Pending]) -> None:
        live = [pending for pending in batch if not pending.future.cancelled()]
        stored = 0

        async def insert_txn(conn: AsyncConnection) -> list[MessageId | ApiError]:
            nonlocal stored
            claims = [p.claim.key_sha256 for p in live if p.claim is not None]
            known = await self._keys.current_txn(conn, claims, datetime.now(UTC) - TTL) if claims else {}
            outcomes: list[MessageId | ApiError] = []
            rows: list[NewMessage] = []
            new_keys: list[IdempotencyRecord] = []
            for p in live:
                record = None if p.claim is None else known.get(p.claim.key_sha256)
                if p.claim is not None and record is not None:
                    outcomes.append(_replay(record, p.claim))  # its own message is dropped, never stored
                    continue
                rows.append(p.message)
                outcomes.append(p.message.id)
                if p.claim is not None:
                    record = IdempotencyRecord(p.claim.key_sha256, p.claim.request_sha256, p.message.id)
                    known[p.claim.key_sha256] = record
                    new_keys.append(record)
            await self._messages.insert_many_txn(conn, rows)
            await self._keys.insert_many_txn(conn, new_keys)
            stored = len(rows)
            return outcomes

        outcomes: list[MessageId | ApiError] | None = None
        failure = ApiError(ErrorCode.DATABASE_ERROR)
        for attempt in range(1, KEY_RACE_ATTEMPTS + 1):
            try:
                outcomes = await self._db.run("messages.accept", insert_txn)
                break
            except StaleEpoch:  # multiconnect: this node lost its shard meanwhile; nothing was stored
                failure = ApiError(ErrorCode.NOT_PRIMARY_COREAPP, "this node lost its shard; retry")
                break
            except IntegrityError:
                if attempt == KEY_RACE_ATTEMPTS:
                    log.exception("could not store %d accepted messages: their keys kept colliding", len(live))
                    break
                log.info("an idempotency key of this batch was stored meanwhile: reading the keys again")
            except Exception:
                log.exception("could not store %d accepted messages", len(live))
                break
        if outcomes is None:
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(failure)
            return
        for pending, outcome in zip(live, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, ApiError):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)
        if stored:
            self._on_committed()
