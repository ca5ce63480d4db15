"""Outbound status changes: monotonic (accepted < sent < delivered < read; failed beside it) and each change
written with its webhook row in the caller's transaction.

``failed`` sits beside the ladder because outcomes are per recipient device: a user on two devices can get a
message on one and not the other, and the business then sees both a ``delivered`` and a ``failed`` (seeds,
"conflicting message delivery status"), in whichever order the devices answered."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.models import OUTBOUND_RANK, MessageDirection, MessageStatus
from coreapp.storage.messages import MessageStore
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


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One reported outcome for an outbound message (an ack, a device's receipt, a refusal)."""

    message_id: MessageId
    status: MessageStatus
    timestamp: int | None = None
    error: StatusError | None = None


def next_status(current: MessageStatus, status: MessageStatus) -> tuple[MessageStatus | None, list[MessageStatus]]:
    """Given the stored status and a reported one: the status to store (``None``: keep) and the ones to report.

    ``failed`` is recorded unless the message already reached a device (``delivered``/``read`` stay); a
    ``delivered`` after a ``failed`` is still reported (another device got it).  A step that skips rungs reports
    the skipped ones first: a ``delivered`` for a message whose ``sent`` ack was lost in a crash implies ``sent``,
    and ``read`` implies ``delivered``, so a receiver sees every rung exactly once, in order.
    """
    if status is MessageStatus.FAILED:
        if current is MessageStatus.FAILED:
            return None, []  # one failed per message, however many devices failed
        reached = OUTBOUND_RANK.get(current, 0) >= OUTBOUND_RANK[MessageStatus.DELIVERED]
        return (None if reached else status), [status]
    if current is MessageStatus.FAILED:
        # A device got it after another failed (the message is delivered after all), or the network's ack arrived
        # after a device's failure (then it stays failed): report just this step.
        return (None if status is MessageStatus.SENT else status), [status]
    floor = OUTBOUND_RANK.get(current, 0)
    if OUTBOUND_RANK[status] <= floor:
        return None, []
    return status, [s for s in _LADDER if floor < OUTBOUND_RANK[s] <= OUTBOUND_RANK[status]]


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
        """Move an outbound message to ``status`` if that is progress (``next_status``); whether a webhook row
        was queued."""
        return await self.advance_many_txn(conn, settings, [StatusChange(message_id, status, timestamp, error)])

    async def advance_many_txn(
        self, conn: AsyncConnection, settings: ApplicationSettings, changes: Sequence[StatusChange]
    ) -> bool:
        """Apply ``changes`` in order, as ``advance_txn`` one by one would, in a few grouped statements: one locking
        read of every message, one ``UPDATE`` per resulting (status, error), one multi-row webhook insert (rows in
        the order of ``changes``, so per-recipient order holds).  Whether any webhook row was queued."""
        if not changes:
            return False
        states = await self._messages.get_states_txn(conn, [c.message_id for c in changes])
        current = {mid: st.status for mid, st in states.items() if st.direction is MessageDirection.OUT}
        stored: dict[MessageId, tuple[MessageStatus, int | None, str | None]] = {}
        forget: list[MessageId] = []
        bodies: list[dict[str, Any]] = []
        for change in changes:
            mid = change.message_id
            was = current.get(mid)
            if was is None:
                continue
            store, reported = next_status(was, change.status)
            if not reported:
                continue
            if store is not None:
                current[mid] = store
                error = change.error if store is MessageStatus.FAILED else None
                _, code, title = stored.get(mid, (store, None, None))
                stored[mid] = (store, error.code, error.title) if error is not None else (store, code, title)
            if settings.pass_through and change.status in (MessageStatus.DELIVERED, MessageStatus.READ):
                forget.append(mid)
            when = change.timestamp if change.timestamp is not None else int(time.time())
            for step in reported:
                if payloads.wants_status(settings, step.value):
                    errors = [_error_entry(change.error)] if step is MessageStatus.FAILED and change.error else None
                    bodies.append(payloads.status(mid, states[mid].peer, step.value, when, errors))
        if stored:
            await self._messages.set_statuses_txn(conn, stored)
        if forget:
            # ``pass_through``: once delivered (or read) the content and envelopes leave the DB.  The original
            # deleted the whole message; OpenPrem keeps id, peer and status (a few bytes) so a later ``read`` is
            # still reported in order and a redelivered receipt is still recognised.
            await self._messages.forget_content_many_txn(conn, forget)
        if bodies:
            await self._webhooks.enqueue_many_txn(conn, WebhookKind.STATUS_CHANGE, bodies)
        return bool(bodies)


def _error_entry(error: StatusError) -> dict[str, object]:
    entry: dict[str, object] = {"code": error.code, "title": error.title}
    if error.details:
        entry["details"] = error.details
    return entry
