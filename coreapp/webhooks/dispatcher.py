"""Delivers the webhook outbox to ``webhooks.url``, in order, at least once.

On-Prem semantics (reference §3.4, DESIGN §8): only HTTP 200 completes an event; anything else is retried with
linear backoff ``min(attempts * callback_backoff_delay_ms, max_callback_backoff_delay_ms)`` (then at the cap,
for as long as it takes).  All state is in the DB, so a restart resumes where the last run stopped; an event
whose 200 arrived but whose row was not yet deleted is sent again, and receivers drop it by
``X-OpenPrem-Event-Id``.

Concurrency and order (``webhooks.max_concurrent_requests``, 6/12/18/24): each row carries a partition (the
peer's wa_id, ``partition_of``).  At most one request per partition is in flight and a partition's rows go in
``seq`` order, so the statuses of one message never overtake each other and an inbound message goes before the
statuses of the replies it caused; up to N partitions are in flight together.  Events of *different* peers may
complete in any order (On-Prem never promised otherwise: receivers order statuses by ``timestamp``).

A failing callback holds back the ones behind it in its partition, and, faithful to the original "a failing
callback blocks the queue", while any callback is failing no new work is started in any partition: only the
failed heads are retried (each on its own backoff) until they get their 200, then delivery resumes.  Requests
already in flight when a failure happens finish normally.

Beyond the original: with ``webhooks.secret`` set every request carries
``X-OpenPrem-Signature: sha256=<hex HMAC-SHA256(secret, body bytes)>``: receivers compute the HMAC of the raw
request body (before any JSON parsing) with the same secret and compare with ``hmac.compare_digest``.  And every
attempt goes to the ``webhook_log`` table (host only, status or error, latency), kept to the newest
``LOG_KEEP_ROWS`` rows and ``LOG_KEEP_S`` of age, readable with ``GET /v1/webhooks/log``.

Targets (``shared.netguard``): ``webhooks.url`` is checked at every attempt, on the address actually connected to,
against the same policy as media links: public addresses only, unless ``WA_FETCH_ALLOW`` lists the host or its
network (``WA_FETCH_ALLOW_LOOPBACK`` in the embedded default).  A refused target is a failed attempt like an
unreachable one (logged with the reason, retried on backoff), and redirects are never followed.

Bounded (``coreapp.webhooks.dead_letters``): a failed attempt past ``WA_WEBHOOK_MAX_AGE_DAYS`` or
``WA_WEBHOOK_MAX_ATTEMPTS`` moves the event to the dead-letter list instead of scheduling a retry.  That is what
unblocks its partition (and, once no other head is failing, the whole queue): the next event is tried at once.  A
housekeeping task (every ``HOUSEKEEPING_EVERY_S``, jittered) trims the delivery log and deletes dead events past
their retention; delivered rows are deleted as soon as they get their 200 (below).

Time: ``clock`` (epoch seconds) decides what is due, ``sleeper`` does the waiting; tests inject both.

Delivered rows are deleted in groups, off the delivery path: after a 200 the row's ``seq`` joins ``_delivered``
(which later reads of the head skip, so it is never posted twice by one run), and a second task deletes what has
collected (up to ``DELETE_BATCH`` rows, lingering ``DELETE_LINGER_S`` for more) in one transaction.  Still
"deleted only after a 200"; a crash before that delete posts those events again, as before.

"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
from yarl import URL

from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import OutboxRow, WebhookStore
from coreapp.webhooks.dead_letters import DeadLetters
from shared.appsettings import ApplicationSettings
from shared.bus.contract.ops import WebhookLogEntry
from shared.config import OutboxSettings
from shared.db.engine import Database
from shared.netguard import AddressPolicy, TargetRefused, refusal_in
from shared.tasks import TaskSupervisor, first_completed

log = logging.getLogger("openprem.coreapp.webhooks")

SslContextProvider = Callable[[], Awaitable[ssl.SSLContext | None]]
"""Returns the context used to verify the receiver (e.g. built from an uploaded webhook CA), or ``None`` for
the default trust store.  Called before every request so an uploaded CA applies without a restart."""

Sleeper = Callable[[float], Awaitable[None]]
"""``asyncio.sleep`` or a test's fake: waits ``seconds`` of the dispatcher's clock."""

EVENT_ID_HEADER = "X-OpenPrem-Event-Id"
SIGNATURE_HEADER = "X-OpenPrem-Signature"
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
LOG_KEEP_ROWS = 10_000
LOG_KEEP_S = 7 * 24 * 3600.0
HOUSEKEEPING_EVERY_S = 300.0
"""Mean seconds between trims of the delivery log (``LOG_KEEP_ROWS`` / ``LOG_KEEP_S``) and collections of dead
events past their retention (each wait ± ``HOUSEKEEPING_JITTER``)."""
HOUSEKEEPING_JITTER = 0.2
LOG_BUFFER_MAX = 10_000
"""Attempts kept in memory while the log cannot be written (the oldest are dropped past this)."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-OpenPrem-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class DispatcherStats:
    """Counters for metrics (``callback_requests_duration_ms``: labels ``result`` and ``type``)."""

    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
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


def url_host(url: str) -> str:
    """``host[:port]`` of ``url`` (what the delivery log keeps: no path, query or credentials)."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "<invalid url>"
    host = parsed.host or "<no host>"
    return f"{host}:{parsed.explicit_port}" if parsed.explicit_port is not None else host


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to log (tokens often ride in the query)."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid url>"


class WebhookDispatcher:
    """A supervised scheduler that drains the outbox (``notify()`` after committing new rows), one request per
    partition, up to ``webhooks.max_concurrent_requests`` in flight."""

    def __init__(
        self,
        db: Database,
        store: WebhookStore,
        settings_store: SettingsStore,
        supervisor: TaskSupervisor,
        clock: Callable[[], float] = time.time,
        *,
        ssl_context_provider: SslContextProvider | None = None,
        targets: AddressPolicy | None = None,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        idle_poll_s: float = IDLE_POLL_S,
        sleeper: Sleeper = asyncio.sleep,
        limits: OutboxSettings | None = None,
    ) -> None:
        self._db = db
        self._store = store
        self._settings = settings_store
        self._supervisor = supervisor
        self._clock = clock
        self._sleeper = sleeper
        self._ssl_context_provider = ssl_context_provider
        self._targets = targets if targets is not None else AddressPolicy()
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[object] | None = None
        self._deleter: asyncio.Task[object] | None = None
        self._delivered: set[int] = set()  # got their 200, row not deleted yet: never posted again by this run
        self._to_delete: list[int] = []
        self._delete_wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # partition -> the task delivering its rows in order
        self._failing: set[int] = set()  # seqs whose last attempt failed (held-back heads): pauses new work
        # Partitions of the last read that only the concurrency limit kept waiting (never attempted, so their rows
        # are exactly as read): a finishing request starts the next of them without reading the outbox again.
        # Any reason to doubt them (new rows, a failure, a settings change) sets ``_dirty`` and forces a read.
        self._startable: dict[str, list[OutboxRow]] = {}
        self._dirty = True
        self.head_reads = 0
        self._log_buffer: list[WebhookLogEntry] = []
        self._housekeeper: asyncio.Task[object] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failed_url: str | None = None  # URL of the last failed attempt: a new URL is tried at once
        self._waiting_for_url = False
        self.stats = DispatcherStats()
        self.dead = DeadLetters(store, limits or OutboxSettings(), clock, self._append_log, self.notify)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(connector=self._targets.connector(), timeout=self._timeout)
        self._settings.add_listener(self._on_settings)
        self._task = self._supervisor.spawn_forever("webhooks.dispatcher", self._run, restart_delay_s=2.0)
        self._deleter = self._supervisor.spawn_forever("webhooks.deleter", self._delete_loop, restart_delay_s=1.0)
        self._housekeeper = self._supervisor.spawn_forever(
            "webhooks.housekeeping", self._housekeeping_cycle, restart_delay_s=HOUSEKEEPING_EVERY_S
        )

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel delivery (in-flight requests are abandoned; their rows stay and are sent again next start)."""
        self._settings.remove_listener(self._on_settings)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout_s)
        await self._cancel_in_flight(timeout_s)
        helpers = [t for t in (self._deleter, self._housekeeper) if t is not None]
        self._deleter = self._housekeeper = None
        for helper in helpers:
            helper.cancel()
        if helpers:
            await asyncio.wait(helpers, timeout=timeout_s)
        with contextlib.suppress(Exception):  # best effort: left rows are posted again next start (receivers dedupe)
            async with asyncio.timeout(timeout_s):
                await self._delete_pending()
                await self._flush_log()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _cancel_in_flight(self, timeout_s: float) -> None:
        tasks = list(self._in_flight.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        self._in_flight.clear()

    def notify(self) -> None:
        """Wake the dispatcher: new rows were committed (or something changed worth re-checking)."""
        self._dirty = True
        self._wake.set()

    async def queue_size(self) -> int:
        """Events waiting for delivery (``callback_queue_size``)."""
        return max(0, await self._store.count() - len(self._delivered))

    async def oldest_pending_age_s(self) -> float:
        """Seconds the oldest event still waiting for its 200 has been queued; 0 when none is
        (``callback_oldest_pending_age_seconds``)."""
        oldest = await self._store.oldest_pending(set(self._delivered))
        return 0.0 if oldest is None else max(0.0, self._clock() - oldest.timestamp())

    async def collect(self) -> int:
        """Trim the delivery log and delete dead events past their retention; how many dead events went."""
        now = self._clock()
        await self._store.trim_log(LOG_KEEP_ROWS, datetime.fromtimestamp(now - LOG_KEEP_S, UTC))
        return await self.dead.collect()

    async def _housekeeping_cycle(self) -> None:
        spread = HOUSEKEEPING_EVERY_S * HOUSEKEEPING_JITTER
        await asyncio.sleep(random.uniform(HOUSEKEEPING_EVERY_S - spread, HOUSEKEEPING_EVERY_S + spread))
        await self.collect()

    def _on_settings(self, _settings: ApplicationSettings) -> None:
        self.notify()

    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()  # before reading, so a notify() during the read is not lost
                await self._sleep(await self._schedule())
        finally:
            # A restart of this task (after a crash) must not leave orphaned requests holding partitions.
            await self._cancel_in_flight(1.0)

    async def _schedule(self) -> float:
        """Start every partition that may start now; seconds until the next look is worth it."""
        settings = await self._settings.get_application()
        url = settings.webhooks.url
        if not url:
            if not self._waiting_for_url:
                log.warning("webhooks.url is not set: events wait in the outbox until it is")
                self._waiting_for_url = True
            return self._idle_poll_s  # rows wait, never dropped; a settings PATCH wakes us
        self._waiting_for_url = False
        limit = settings.webhooks.max_concurrent_requests
        if not self._dirty and not self._failing and self._startable:
            return self._start_waiting(url, settings, limit)
        self._dirty = False  # before the read: a notify() while it runs sets it again
        self._startable = {}
        # Copies taken before the read: a request may finish (and the deleter forget its seq) while the read is
        # in flight, and the read's snapshot may still hold that row as it was; its partition is still marked
        # in flight in the copy, so nothing of it is started from this snapshot.
        delivered = set(self._delivered)
        busy = set(self._in_flight)
        failing = set(self._failing)
        size = BATCH + len(delivered)
        # The failed heads are read wherever they are: while paused nothing else moves, so they must be seen.
        self.head_reads += 1
        rows = await (self._store.head(size, also=sorted(failing)) if failing else self._store.head(size))
        present = {r.seq for r in rows}
        self._failing -= {seq for seq in failing if seq not in present and seq not in delivered}  # gone
        self._failing |= {r.seq for r in rows if r.attempts > 0 and r.seq not in delivered}  # e.g. after a restart
        by_partition: dict[str, list[OutboxRow]] = {}
        for row in rows:
            if row.seq not in delivered:
                by_partition.setdefault(row.partition, []).append(row)
        url_changed = self._failed_url is not None and url != self._failed_url
        now = self._clock()
        wait_s = self._idle_poll_s
        for partition, queue in by_partition.items():  # in order of each partition's head
            if partition in busy:
                continue
            head = queue[0]
            if self._failing and head.seq not in self._failing:
                continue  # a failing callback blocks the queue: only failed heads are retried
            due_in = head.next_attempt_at.timestamp() - now
            if due_in > 0 and not url_changed:
                wait_s = min(wait_s, due_in)
                continue
            if len(self._in_flight) >= limit:
                if not self._failing and not url_changed:
                    self._startable[partition] = queue  # a finishing request wakes us and starts it
                continue
            self._start(partition, queue, url, settings)
        return wait_s

    def _start_waiting(self, url: str, settings: ApplicationSettings, limit: int) -> float:
        """Start partitions kept from the last read while there is room (no read: nothing about them changed)."""
        while self._startable and len(self._in_flight) < limit:
            partition = next(iter(self._startable))
            queue = self._startable.pop(partition)
            if partition not in self._in_flight:
                self._start(partition, queue, url, settings)
        return self._idle_poll_s

    def _start(self, partition: str, queue: list[OutboxRow], url: str, settings: ApplicationSettings) -> None:
        # Supervised: a crash is logged with the partition; ``_drain`` itself frees the partition either way.
        drain = self._drain(partition, queue, url, settings)
        self._in_flight[partition] = self._supervisor.spawn(f"webhooks.drain:{partition}", drain)

    async def _drain(self, partition: str, queue: list[OutboxRow], url: str, settings: ApplicationSettings) -> None:
        """Deliver ``queue`` (rows of one partition, in order) one at a time, stopping at the first failure (a
        dead-lettered row is not one: the next goes on) or as soon as any partition is failing."""
        try:
            for row in queue:
                if not await self._deliver(row, url, settings) or self._failing:
                    return  # this row failed, or another partition is failing: the queue is blocked
        finally:
            self._in_flight.pop(partition, None)
            self._wake.set()

    async def _deliver(self, row: OutboxRow, url: str, settings: ApplicationSettings) -> bool:
        """One attempt; whether its partition may go on (it got its 200, or it failed past the limits and was
        dead-lettered)."""
        error = await self._post(row, url, settings)
        if error is None:
            self._failing.discard(row.seq)
            if self._failed_url == url and not self._failing:
                self._failed_url = None
            self._delivered.add(row.seq)
            self._to_delete.append(row.seq)
            self._delete_wake.set()
            return True
        self._failed_url = url
        self._failing.add(row.seq)  # at once: other partitions stop starting new work while this is settled
        self._dirty = True
        attempts = row.attempts + 1
        reason = self.dead.reason(row, attempts)
        if reason is not None:
            buried = await self.dead.bury(row, attempts, error, reason)
            if buried is not None:
                self._failing.discard(row.seq)
                if buried:
                    self.stats.dead_lettered += 1
                return True
        delay_s = backoff_ms(attempts, settings) / 1000.0
        next_at = datetime.fromtimestamp(self._clock() + delay_s, UTC)
        try:
            await self._store.defer(row.seq, attempts, next_at, error)
        except Exception:
            log.exception("could not record the failed attempt of webhook %s", row.event_id)
        log.warning(
            "webhook %s to %s failed (attempt %d): %s; retry in %.2fs",
            row.event_id,
            redact_url(url),
            attempts,
            error,
            delay_s,
        )
        return False

    async def _post(self, row: OutboxRow, url: str, settings: ApplicationSettings) -> str | None:
        """POST the stored body once; ``None`` on HTTP 200, else why it failed.  Logged to ``webhook_log``."""
        assert self._session is not None, "start() first"
        ssl_ctx = await self._ssl_context_provider() if self._ssl_context_provider is not None else None
        data = row.body.encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: row.event_id}
        if settings.webhooks.secret:
            headers[SIGNATURE_HEADER] = signature(settings.webhooks.secret, data)
        started = time.perf_counter()
        error: str | None
        status: int | None = None
        try:
            self._targets.check_url(url)
            async with self._session.post(
                url,
                data=data,
                headers=headers,
                ssl=ssl_ctx if ssl_ctx is not None else True,
                allow_redirects=False,  # a redirect is not a 200: On-Prem treats it as a failure
            ) as resp:
                status = resp.status
                result = "success" if resp.status == 200 else str(resp.status)
                error = None if resp.status == 200 else f"HTTP {resp.status}"
        except TimeoutError:
            result, error = "timeout", f"timeout after {self._timeout.total}s"
        except TargetRefused as exc:  # its text names the host, never the path or query
            result, error = "refused", f"target not allowed: {exc}"
        except (aiohttp.InvalidURL, ValueError) as exc:
            result = error = type(exc).__name__  # its text repeats the URL, query (and any token) included
        except (aiohttp.ClientError, OSError) as exc:
            refused = refusal_in(exc)
            if refused is not None:
                result, error = "refused", f"target not allowed: {refused}"
            else:
                result, error = type(exc).__name__, f"{type(exc).__name__}: {exc}"
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.stats.record(result, row.kind.value, elapsed_ms)
        self._log(row, url, status, error, elapsed_ms)
        if error is None:
            log.debug("webhook %s (%s) delivered in %.1f ms", row.event_id, row.kind, elapsed_ms)
        return error

    def _log(self, row: OutboxRow, url: str, status: int | None, error: str | None, elapsed_ms: float) -> None:
        at = datetime.fromtimestamp(self._clock(), UTC)
        attempt = row.attempts + 1
        host = url_host(url)
        self._append_log(
            WebhookLogEntry(row.event_id, row.seq, row.kind.value, host, attempt, status, error, elapsed_ms, at)
        )

    def _append_log(self, entry: WebhookLogEntry) -> None:
        if len(self._log_buffer) >= LOG_BUFFER_MAX:
            del self._log_buffer[0]
        self._log_buffer.append(entry)
        self._delete_wake.set()

    async def _flush_log(self) -> None:
        entries, self._log_buffer = self._log_buffer, []
        try:
            await self._store.add_log(entries)
        except BaseException:
            self._log_buffer[:0] = entries[-LOG_BUFFER_MAX:]  # try again next time
            raise

    async def _delete_loop(self) -> None:
        """Delete delivered rows in groups (one transaction per ``DELETE_BATCH`` or linger period) and write the
        delivery log."""
        while True:
            await self._delete_wake.wait()
            if len(self._to_delete) < DELETE_BATCH:
                await asyncio.sleep(DELETE_LINGER_S)
            try:
                await self._delete_pending()
                await self._flush_log()
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
        """Sleep up to ``seconds`` (bounded) of ``sleeper`` time, or until ``notify()``."""
        if seconds <= 0:
            return
        await first_completed(self._wake.wait(), self._sleeper(min(seconds, MAX_SLEEP_S)))
