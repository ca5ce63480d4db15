"""Outbound status changes: monotonic (accepted < sent < delivered < read; failed beside it) and each change
written with its webhook row in the caller's transaction.

``failed`` sits beside the ladder because outcomes are per recipient device: a user on two devices can get a
message on one and not the other, and the business then sees both a ``delivered`` and a ``failed`` (seeds,
"conflicting message delivery status"), in whichever order the devices answered."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import OUTBOUND_RANK, MessageDirection, MessageStatus
from coreapp.storage.messages import MessageStore
from coreapp.storage.tables import messages as messages_table
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from coreapp.webhooks import payloads
from shared.appsettings import ApplicationSettings
from shared.ids import MessageId

_LADDER = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ)


@dataclass(frozen=True, slots=True)
class StatusError:
    code: int
    title: str
    details: str | None = None  # ``errors[].details`` of the webhook (e.g. the terms-of-service link)


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

        ``failed`` is recorded unless the message already reached a device (``delivered``/``read`` stay); a
        ``delivered`` after a ``failed`` is still reported (another device got it).  A step that skips rungs
        reports the skipped ones first: a ``delivered`` for a message whose ``sent`` ack was lost in a crash
        implies ``sent``, and ``read`` implies ``delivered``, so a receiver sees every rung exactly once, in order.
        """
        state = await self._messages.get_state_txn(conn, message_id)
        if state is None or state.direction is not MessageDirection.OUT:
            return False
        current = state.status
        reported: list[MessageStatus]
        if status is MessageStatus.FAILED:
            if current is MessageStatus.FAILED:
                return False  # one failed per message, however many devices failed
            if OUTBOUND_RANK.get(current, 0) < OUTBOUND_RANK[MessageStatus.DELIVERED]:
                await self._messages.set_status_txn(
                    conn, message_id, status, error.code if error else None, error.title if error else None
                )
            reported = [status]
        else:
            if current is MessageStatus.FAILED:
                # A device got it after another failed (the message is delivered after all), or the network's
                # ack arrived after a device's failure (then it stays failed): report just this step.
                reported = [status]
            else:
                floor = OUTBOUND_RANK.get(current, 0)
                if OUTBOUND_RANK[status] <= floor:
                    return False
                reported = [s for s in _LADDER if floor < OUTBOUND_RANK[s] <= OUTBOUND_RANK[status]]
            if not (current is MessageStatus.FAILED and status is MessageStatus.SENT):
                await self._messages.set_status_txn(conn, message_id, status)
            if settings.pass_through and status in (MessageStatus.DELIVERED, MessageStatus.READ):
                await _forget_content_txn(conn, message_id)
        when = timestamp if timestamp is not None else int(time.time())
        errors = [_error_entry(error)] if error is not None else None
        queued = False
        for step in reported:
            if payloads.wants_status(settings, step.value):
                step_errors = errors if step is MessageStatus.FAILED else None
                body = payloads.status(message_id, state.peer, step.value, when, step_errors)
                await self._webhooks.enqueue_txn(conn, WebhookKind.STATUS_CHANGE, body)
                queued = True
        return queued


async def _forget_content_txn(conn: AsyncConnection, message_id: MessageId) -> None:
    """``pass_through``: once delivered (or read) the message's content and envelopes leave the DB.

    The original deleted the whole message; OpenPrem keeps the id, peer and status (a few bytes) so a later
    ``read`` is still reported in order and a redelivered receipt is still recognised.  Applied from the next
    status on (no restart needed).
    """
    await conn.execute(
        update(messages_table).where(messages_table.c.id == message_id).values(content=None, envelopes=None)
    )


def _error_entry(error: StatusError) -> dict[str, object]:
    entry: dict[str, object] = {"code": error.code, "title": error.title}
    if error.details:
        entry["details"] = error.details
    return entry
