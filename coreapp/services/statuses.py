"""Outbound status changes: monotonic (accepted < sent < delivered < read; failed beside it) and each change
written with its webhook row in the caller's transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import OUTBOUND_RANK, MessageDirection, MessageStatus
from coreapp.storage.messages import MessageStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from coreapp.webhooks import payloads
from shared.appsettings import ApplicationSettings
from shared.ids import MessageId


@dataclass(frozen=True, slots=True)
class StatusError:
    code: int
    title: str


class StatusWriter:
    def __init__(self, messages: MessageStore, webhooks: WebhookStore) -> None:
        self._messages = messages
        self._webhooks = webhooks

    async def advance_txn(
        self,
        conn: AsyncConnection,
        settings: ApplicationSettings,
        message_id: MessageId,
        status: MessageStatus,
        timestamp: int | None = None,
        error: StatusError | None = None,
    ) -> bool:
        """Move an outbound message to ``status`` if that is progress; whether a webhook row was queued.

        ``failed`` is recorded unless the message already reached a device (``delivered``/``read`` stay) and is
        reported once per message; a ``read`` never preceded by ``delivered`` is reported as just ``read``.
        """
        state = await self._messages.get_state_txn(conn, message_id)
        if state is None or state.direction is not MessageDirection.OUT:
            return False
        current = state.status
        if status is MessageStatus.FAILED:
            if current is MessageStatus.FAILED:
                return False
            if OUTBOUND_RANK.get(current, 0) < OUTBOUND_RANK[MessageStatus.DELIVERED]:
                await self._messages.set_status_txn(
                    conn, message_id, status, error.code if error else None, error.title if error else None
                )
        else:
            if current is not MessageStatus.FAILED and OUTBOUND_RANK[status] <= OUTBOUND_RANK.get(current, 0):
                return False
            await self._messages.set_status_txn(conn, message_id, status)
        if not payloads.wants_status(settings, status.value):
            return False
        errors = [{"code": error.code, "title": error.title}] if error is not None else None
        body = payloads.status(
            message_id, state.peer, status.value, timestamp if timestamp is not None else int(time.time()), errors
        )
        await self._webhooks.enqueue_txn(conn, WebhookKind.STATUS_CHANGE, body)
        return True
