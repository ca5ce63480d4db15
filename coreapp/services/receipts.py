"""Receipts (``Receipt`` pushes): the per-device log, the message's monotonic status and its webhook row in one
transaction, then the ack; receipts that arrived together share that transaction.  A duplicate receipt (same
message, device and status) changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.link import ChatLink
from coreapp.models import MessageStatus
from coreapp.services.statuses import StatusChange, StatusError, StatusWriter
from coreapp.storage.messages import MessageStore
from coreapp.storage.settings import SettingsStore
from shared.db.engine import Database
from shared.errors import ErrorCode
from shared.ids import MessageId
from shared.wire.frames import Receipt, ReceiptStatus

log = logging.getLogger("openprem.coreapp.receipts")

_STATUS = {
    ReceiptStatus.DELIVERED: MessageStatus.DELIVERED,
    ReceiptStatus.READ: MessageStatus.READ,
    ReceiptStatus.FAILED: MessageStatus.FAILED,
}


class ReceiptService:
    def __init__(
        self,
        db: Database,
        link: ChatLink,
        messages: MessageStore,
        statuses: StatusWriter,
        settings: SettingsStore,
        notify_webhooks: Callable[[], None],
    ) -> None:
        self._db = db
        self._link = link
        self._messages = messages
        self._statuses = statuses
        self._settings = settings
        self._notify_webhooks = notify_webhooks
        # Metrics (``/v1/stats/app``): receipts applied (not replays of one already logged), by status.
        self.applied: dict[MessageStatus, int] = dict.fromkeys(_STATUS.values(), 0)

    async def handle(self, receipt: Receipt) -> None:
        await self.handle_many([receipt])

    async def handle_many(self, receipts: Sequence[Receipt]) -> None:
        """Apply receipts that arrived together in one transaction, in arrival order, then ack them all.

        The push worker hands over every ``Receipt`` already queued behind the first (``PushDispatcher``), so
        under load one commit serves many; a crash before the commit leaves them all unacked (replayed), after it
        the log makes each replay a no-op.
        """
        settings = await self._settings.get_application()
        keyed = [((MessageId(r.message_id), r.device_id, _STATUS[r.status]), r.timestamp) for r in receipts]

        async def receipts_txn(conn: AsyncConnection) -> tuple[bool, list[StatusChange]]:
            fresh = await self._messages.log_receipts_txn(conn, keyed)
            changes = [_change(r) for r, new in zip(receipts, fresh, strict=True) if new]
            return await self._statuses.advance_many_txn(conn, settings, changes), changes

        queued, applied = await self._db.run("receipts.apply", receipts_txn)
        for change in applied:  # counted once committed: a retried transaction counts nothing twice
            self.applied[change.status] += 1
        for receipt in receipts:
            await self._link.ack(receipt)
        if queued:
            self._notify_webhooks()


def _change(receipt: Receipt) -> StatusChange:
    status = _STATUS[receipt.status]
    error: StatusError | None = None
    if status is MessageStatus.FAILED:
        code = receipt.error_code or ErrorCode.GENERIC_ASYNC.code
        error = StatusError(code, receipt.error_title or ErrorCode.from_code(code).title, receipt.error_details)
    return StatusChange(MessageId(receipt.message_id), status, receipt.timestamp, error)
