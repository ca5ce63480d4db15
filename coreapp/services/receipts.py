"""Receipts (``Receipt`` pushes): the per-device log, the message's monotonic status and its webhook row in one
transaction, then the ack.  A duplicate receipt (same message, device and status) changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.link import ChatLink
from coreapp.models import MessageStatus
from coreapp.services.statuses import StatusError, StatusWriter
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

    async def handle(self, receipt: Receipt) -> None:
        status = _STATUS[receipt.status]
        message_id = MessageId(receipt.message_id)
        error: StatusError | None = None
        if status is MessageStatus.FAILED:
            code = receipt.error_code or ErrorCode.GENERIC_ASYNC.code
            error = StatusError(code, receipt.error_title or ErrorCode.from_code(code).title, receipt.error_details)
        settings = await self._settings.get_application()

        async def receipt_txn(conn: AsyncConnection) -> bool:
            if not await self._messages.log_receipt_txn(conn, message_id, receipt.device_id, status, receipt.timestamp):
                return False  # seen before
            return await self._statuses.advance_txn(conn, settings, message_id, status, receipt.timestamp, error)

        queued = await self._db.run("receipts.apply", receipt_txn)
        await self._link.ack(receipt)
        if queued:
            self._notify_webhooks()
