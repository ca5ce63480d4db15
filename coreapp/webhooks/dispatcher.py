"""Delivers the webhook outbox to ``webhooks.url``, in order, at least once.

On-Prem semantics (reference §3.4, DESIGN §8): only HTTP 200 completes an event; anything else is retried with
linear backoff ``min(attempts * callback_backoff_delay_ms, max_callback_backoff_delay_ms)`` and, because events
are delivered in order, a failing head holds back everything queued behind it.  All state is in the DB, so a
restart resumes where the last run stopped; an event whose 200 arrived but whose row was not yet deleted is
sent again, and receivers drop it by ``X-OpenPrem-Event-Id``.

Delivered rows are deleted in groups, off the delivery path: after a 200 the row's ``seq`` joins ``_delivered``
(which later reads of the head skip, so it is never posted twice by one run), and a second task deletes what has
collected (up to ``DELETE_BATCH`` rows, lingering ``DELETE_LINGER_S`` for more) in one transaction.  Still
"deleted only after a 200"; a crash before that delete posts those events again, as before.

Delivery is strictly sequential: one request in flight.  ``webhooks.max_concurrent_requests`` is accepted but
not used yet, since parallel requests could complete out of order and the On-Prem ordering promise is the one
receivers depend on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from yarl import URL

from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import OutboxRow, WebhookStore
from shared.appsettings import ApplicationSettings
from shared.db.engine import Database
from shared.tasks import TaskSupervisor

log = logging.getLogger("openprem.coreapp.webhooks")

SslContextProvider = Callable[[], Awaitable[ssl.SSLContext | None]]
"""Returns the context used to verify the receiver (e.g. built from an uploaded webhook CA), or ``None`` for
the default trust store.  Called before every request so an uploaded CA applies without a restart."""

EVENT_ID_HEADER = "X-OpenPrem-Event-Id"
REQUEST_TIMEOUT_S = 15.0
IDLE_POLL_S = 5.0
"""Re-check the outbox this often even without ``notify()`` (a missed wake-up only costs this much)."""
MAX_SLEEP_S = 60.0
"""Longest single sleep: bounds the effect of a wall-clock jump on a scheduled retry."""
BATCH = 100
"""Rows read from the head of the outbox per look."""
DELETE_BATCH = 100
"""Delivered rows deleted per transaction at most."""
DELETE_LINGER_S = 0.05
"""After the first delivered row, wait this long for more before deleting (fewer, larger transactions)."""
DELETE_RETRY_S = 1.0


@dataclass
class DispatcherStats:
    """Counters for metrics (``callback_requests_duration_ms``: labels ``result`` and ``type``)."""

    delivered: int = 0
    failed_attempts: int = 0
    last_latency_ms: float | None = None
    durations_ms: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    """``(result, kind) -> (count, sum_ms)``; ``result`` is ``success``, an HTTP status, or an error name."""

    def record(self, result: str, kind: str, elapsed_ms: float) -> None:
        count, total = self.durations_ms.get((result, kind), (0, 0.0))
        self.durations_ms[(result, kind)] = (count + 1, total + elapsed_ms)
        self.last_latency_ms = elapsed_ms
        if result == "success":
            self.delivered += 1
        else:
            self.failed_attempts += 1


def backoff_ms(attempts: int, settings: ApplicationSettings) -> int:
    """Linear backoff after the ``attempts``-th failure, capped (3 s, 6 s, … 15 min with the defaults)."""
    return min(attempts * settings.callback_backoff_delay_ms, settings.max_callback_backoff_delay_ms)


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to log (tokens often ride in the query)."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid url>"


class WebhookDispatcher:
    """One supervised task that drains the outbox head-first.  ``notify()`` after committing new rows."""

    def __init__(
        self,
        db: Database,
        store: WebhookStore,
        settings_store: SettingsStore,
        supervisor: TaskSupervisor,
        clock: Callable[[], float] = time.time,
        *,
        ssl_context_provider: SslContextProvider | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        idle_poll_s: float = IDLE_POLL_S,
    ) -> None:
        self._db = db
        self._store = store
        self._settings = settings_store
        self._supervisor = supervisor
        self._clock = clock
        self._ssl_context_provider = ssl_context_provider
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[object] | None = None
        self._deleter: asyncio.Task[object] | None = None
        self._delivered: set[int] = set()  # got their 200, row not deleted yet: never posted again by this run
        self._to_delete: list[int] = []
        self._delete_wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._failed_url: str | None = None  # URL of the last failed attempt: a new URL is tried at once
        self._waiting_for_url = False
        self.stats = DispatcherStats()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._settings.add_listener(self._on_settings)
        self._task = self._supervisor.spawn_forever("webhooks.dispatcher", self._run, restart_delay_s=2.0)
        self._deleter = self._supervisor.spawn_forever("webhooks.deleter", self._delete_loop, restart_delay_s=1.0)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel delivery (an in-flight request is abandoned; its row stays and is sent again next start)."""
        self._settings.remove_listener(self._on_settings)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout_s)
        deleter, self._deleter = self._deleter, None
        if deleter is not None:
            deleter.cancel()
            await asyncio.wait({deleter}, timeout=timeout_s)
        if self._to_delete:  # best effort: whatever is left is posted again next start (receivers dedupe)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await self._delete_pending()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def notify(self) -> None:
        """Wake the dispatcher: new rows were committed (or something changed worth re-checking)."""
        self._wake.set()

    async def queue_size(self) -> int:
        """Events waiting for delivery (``callback_queue_size``)."""
        return max(0, await self._store.count() - len(self._delivered))

    def _on_settings(self, _settings: ApplicationSettings) -> None:
        self.notify()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before reading, so a notify() during the read is not lost
            # A copy taken before the read: the deleter may delete a row (and forget its seq) while the read
            # is in flight, and the read's snapshot may still hold that row.
            delivered = set(self._delivered)
            rows = [r for r in await self._store.head(BATCH + len(delivered)) if r.seq not in delivered]
            wait_s = self._idle_poll_s if not rows else 0.0
            for row in rows:
                wait = await self._handle(row)
                if wait is not None:
                    wait_s = wait
                    break
            await self._sleep(wait_s)

    async def _handle(self, row: OutboxRow) -> float | None:
        """Deliver ``row`` if it is due; ``None`` when delivered, else seconds to wait before the next look."""
        settings = await self._settings.get_application()
        url = settings.webhooks.url
        if not url:
            if not self._waiting_for_url:
                log.warning("webhooks.url is not set: events wait in the outbox until it is")
                self._waiting_for_url = True
            return self._idle_poll_s  # rows wait, never dropped; a settings PATCH wakes us
        self._waiting_for_url = False

        due_in = row.next_attempt_at.timestamp() - self._clock()
        url_changed = self._failed_url is not None and url != self._failed_url
        if due_in > 0 and not url_changed:
            return due_in

        error = await self._post(row, url)
        if error is None:
            self._failed_url = None
            self._delivered.add(row.seq)
            self._to_delete.append(row.seq)
            self._delete_wake.set()
            return None

        self._failed_url = url
        attempts = row.attempts + 1
        delay_s = backoff_ms(attempts, settings) / 1000.0
        next_at = datetime.fromtimestamp(self._clock() + delay_s, UTC)
        await self._store.defer(row.seq, attempts, next_at, error)
        log.warning(
            "webhook %s to %s failed (attempt %d): %s; retry in %.2fs",
            row.event_id,
            redact_url(url),
            attempts,
            error,
            delay_s,
        )
        return delay_s

    async def _post(self, row: OutboxRow, url: str) -> str | None:
        """POST the stored body once; ``None`` on HTTP 200, else why it failed."""
        assert self._session is not None, "start() first"
        ssl_ctx = await self._ssl_context_provider() if self._ssl_context_provider is not None else None
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: row.event_id}
        started = time.perf_counter()
        error: str | None
        try:
            async with self._session.post(
                url,
                data=row.body.encode(),
                headers=headers,
                ssl=ssl_ctx if ssl_ctx is not None else True,
                allow_redirects=False,  # a redirect is not a 200: On-Prem treats it as a failure
            ) as resp:
                result = "success" if resp.status == 200 else str(resp.status)
                error = None if resp.status == 200 else f"HTTP {resp.status}"
        except TimeoutError:
            result, error = "timeout", f"timeout after {self._timeout.total}s"
        except (aiohttp.InvalidURL, ValueError) as exc:
            result = error = type(exc).__name__  # its text repeats the URL, query (and any token) included
        except (aiohttp.ClientError, OSError) as exc:
            result, error = type(exc).__name__, f"{type(exc).__name__}: {exc}"
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.stats.record(result, row.kind, elapsed_ms)
        if error is None:
            log.debug("webhook %s (%s) delivered in %.1f ms", row.event_id, row.kind, elapsed_ms)
        return error

    async def _delete_loop(self) -> None:
        """Delete delivered rows in groups: one transaction per ``DELETE_BATCH`` (or per linger period)."""
        while True:
            await self._delete_wake.wait()
            if len(self._to_delete) < DELETE_BATCH:
                await asyncio.sleep(DELETE_LINGER_S)
            try:
                await self._delete_pending()
            except Exception:
                log.exception("could not delete %d delivered webhook rows; retrying", len(self._to_delete))
                await asyncio.sleep(DELETE_RETRY_S)

    async def _delete_pending(self) -> None:
        self._delete_wake.clear()
        while self._to_delete:
            seqs = self._to_delete[:DELETE_BATCH]
            await self._store.delete_many(seqs)
            del self._to_delete[: len(seqs)]
            self._delivered.difference_update(seqs)

    async def _sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds`` (bounded), or until ``notify()``."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(seconds, MAX_SLEEP_S)):
                await self._wake.wait()
