"""The outbox's bound: when the dispatcher gives up on an event, its move to ``webhook_dead``, replays by an admin,
and the collection of old dead events.

A failed attempt at an event older than ``WA_WEBHOOK_MAX_AGE_DAYS`` (by its ``created_at``), or whose attempt
number reaches ``WA_WEBHOOK_MAX_ATTEMPTS`` (0: no limit), dead-letters it instead of scheduling a retry: every
event gets at least one attempt, and below the limits the On-Prem ordering is untouched.  The move is one
transaction (``WebhookStore.dead_letter``), so the event is in exactly one of the two tables.  A replay queues it
again under a new ``seq`` (the end of its partition), with the same event id, attempts and age from zero.  Dead
events are deleted ``WA_WEBHOOK_DEAD_RETENTION_DAYS`` after they were given up on.  Each dead-lettering and
replay is a delivery-log entry (``action``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from coreapp.storage.webhooks import OutboxRow, WebhookStore
from shared.bus.contract.ops import DeadReason, WebhookAction, WebhookLogEntry
from shared.config import OutboxSettings
from shared.errors import ApiError, ErrorCode
from shared.ids import EventId

log = logging.getLogger("openprem.coreapp.webhooks")

DAY_S = 86_400.0

LogEntry = Callable[[WebhookLogEntry], None]
"""Appends to the dispatcher's buffered delivery log."""


class DeadLetters:
    def __init__(
        self,
        store: WebhookStore,
        limits: OutboxSettings,
        clock: Callable[[], float],
        log_entry: LogEntry,
        notify: Callable[[], None],
    ) -> None:
        self.limits = limits
        self._store = store
        self._clock = clock
        self._log_entry = log_entry
        self._notify = notify

    def reason(self, row: OutboxRow, attempts: int) -> DeadReason | None:
        """Why the ``attempts``-th failure of ``row`` is its last, or ``None`` if it is retried."""
        limits = self.limits
        if limits.max_attempts and attempts >= limits.max_attempts:
            return "max_attempts"
        if self._clock() - row.created_at.timestamp() >= limits.max_age_days * DAY_S:
            return "max_age"
        return None

    async def bury(self, row: OutboxRow, attempts: int, error: str, reason: DeadReason) -> bool | None:
        """Move the failed ``row`` to the dead-letter list: ``True`` moved, ``False`` it was no longer queued,
        ``None`` the database refused (the dispatcher then retries it as usual)."""
        try:
            moved = await self._store.dead_letter(row, attempts, error, reason)
        except Exception:
            log.exception("could not dead-letter webhook %s; retrying it instead", row.event_id)
            return None
        if moved:
            why = f"{reason}: {error}"
            self._log(row.event_id, row.seq, row.kind.value, attempts, why, "dead_lettered")
            log.warning(
                "webhook %s (%s) dead-lettered after %d failed attempts (%s); its partition moves on",
                row.event_id,
                row.kind.value,
                attempts,
                why,
            )
        return moved

    async def replay(self, event_id: EventId | None, limit: int) -> tuple[int, int]:
        """Queue dead events again (one, or the oldest ``limit``); ``(replayed, remaining)``.  1006 for an
        ``event_id`` that is not in the dead-letter list."""
        rows, remaining = await self._store.replay_dead(event_id, limit)
        if event_id is not None and not rows:
            raise ApiError(ErrorCode.NOT_FOUND, f"webhook event {event_id} is not in the dead-letter list")
        for row in rows:
            self._log(row.event_id, row.seq, row.kind.value, 0, None, "replayed")
        if rows:
            log.info("%d dead-lettered webhook(s) queued again by an admin; %d remain", len(rows), remaining)
            self._notify()
        return len(rows), remaining

    async def collect(self) -> int:
        """Delete dead events past their retention; how many went."""
        cutoff = datetime.fromtimestamp(self._clock() - self.limits.dead_retention_days * DAY_S, UTC)
        deleted = await self._store.collect_dead(cutoff)
        if deleted:
            log.info("deleted %d dead-lettered webhooks past their retention", deleted)
        return deleted

    async def count(self) -> int:
        """Events in the dead-letter list (``callback_dead_letters``)."""
        return await self._store.dead_count()

    def _log(
        self, event_id: EventId, seq: int, kind: str, attempt: int, error: str | None, action: WebhookAction
    ) -> None:
        at = datetime.fromtimestamp(self._clock(), UTC)
        self._log_entry(WebhookLogEntry(event_id, seq, kind, "", attempt, None, error, 0.0, at, action))
