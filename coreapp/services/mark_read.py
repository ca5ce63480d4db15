"""Mark an inbound message as read (``PUT /v1/messages/{id}``): a ``ReadReceipt`` to the sender, then a record.

The receipt goes first and the status is written only once the network acked it, so a failure leaves nothing
recorded and the caller may simply retry; a repeated call sends the receipt again (the network treats it as
idempotent).  The record is the inbound row's status moving from ``received`` to ``read``.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.link import ConnState
from coreapp.chat.ready import LinkSource
from coreapp.chat.session import expect
from coreapp.models import MessageDirection, MessageState, MessageStatus
from coreapp.storage.messages import MessageStore
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.ids import MessageId
from shared.wire.frames import Ack, ReadReceipt

log = logging.getLogger("openprem.coreapp.inbound")


class ReadMarker:
    def __init__(self, db: Database, messages: MessageStore, link: LinkSource) -> None:
        self._db = db
        self._messages = messages
        self._link = link

    async def mark_read(self, message_id: MessageId) -> None:
        link = self._link.link
        if link is None or link.state is not ConnState.READY:
            log.warning("messages.mark_read refused: service not ready")
            raise ApiError(ErrorCode.NOT_READY)

        async def lookup_txn(conn: AsyncConnection) -> MessageState | None:
            return await self._messages.get_state_txn(conn, message_id)

        state = await self._db.run("messages.mark_read.lookup", lookup_txn)
        if state is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no message {message_id}")
        if state.direction is not MessageDirection.IN:
            raise ApiError(
                ErrorCode.INVALID_PARAMETER,
                f"{message_id} was sent, not received: only received messages can be marked as read",
            )
        try:
            expect(await link.request(ReadReceipt(message_id=message_id, to=state.peer)), Ack)
        except ChatRemoteError as exc:
            log.warning("read receipt for %s refused by the network: %s", message_id, exc)
            raise ApiError(exc.error_code, f"the network refused the read receipt: {exc.message}") from None
        except ChatUnavailable as exc:
            log.info("read receipt for %s not sent: %s", message_id, exc)
            raise ApiError(ErrorCode.NOT_READY, "the chat connection dropped; try again") from None
        if state.status is MessageStatus.READ:
            return

        async def record_txn(conn: AsyncConnection) -> None:
            await self._messages.set_status_txn(conn, message_id, MessageStatus.READ)

        await self._db.run("messages.mark_read", record_txn)
