"""The load generator: the same client code drives OpenPrem and the floor.

Closed loop (``closed``): ``concurrency`` workers, each with its own keep-alive connection, send the next
message as soon as the previous answer is in.  Open loop (``paced``): message ``i`` is due at ``start + i/rate``
and goes out then, with at most ``concurrency`` in flight (a late answer delays the next send; the lag is
reported).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

REQUEST_TIMEOUT_S = 30.0


@dataclass(slots=True)
class Sample:
    """One API call: when it started and ended (``time.monotonic()``), its status and the message id."""

    index: int
    to: str
    started: float
    ended: float
    status: int  # HTTP status; 0 for a transport error or timeout
    message_id: str | None
    error: str | None = None


def text_body(index: int, to: str) -> bytes:
    return json.dumps({"to": to, "type": "text", "text": {"body": f"bench message {index}"}}).encode()


def connector(concurrency: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=concurrency, ssl=False, force_close=False, enable_cleanup_closed=True)


async def send_one(session: aiohttp.ClientSession, url: str, token: str, index: int, to: str) -> Sample:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.monotonic()
    try:
        async with session.post(url, data=text_body(index, to), headers=headers) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Sample(index, to, started, time.monotonic(), 0, None, f"{type(exc).__name__}: {exc}")
    ended = time.monotonic()
    message_id: str | None = None
    error: str | None = None
    if status in (200, 201):
        try:
            message_id = str(json.loads(raw)["messages"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            error = f"unexpected body: {raw[:200]!r}"
    else:
        error = raw[:300].decode(errors="replace")
    return Sample(index, to, started, ended, status, message_id, error)


OnSample = Callable[[Sample], None]
"""Called after each answer (the progress line, ``bench.live``); it must not block."""


async def closed(
    base_url: str,
    token: str,
    recipients: list[str],
    count: int,
    concurrency: int,
    first_index: int = 0,
    on_sample: OnSample | None = None,
) -> list[Sample]:
    """``count`` sends, round-robin over ``recipients``, ``concurrency`` at a time."""
    url = base_url + "/v1/messages"
    samples: list[Sample] = []
    next_index = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index
        while next_index < count:
            i = next_index
            next_index += 1
            n = first_index + i
            sample = await send_one(session, url, token, n, recipients[n % len(recipients)])
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector(concurrency), timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return samples


@dataclass
class PacedResult:
    samples: list[Sample]
    max_lag_s: float  # how late the latest send started compared with its schedule


async def paced(
    base_url: str,
    token: str,
    recipients: list[str],
    rate: float,
    duration_s: float,
    concurrency: int,
    first_index: int = 0,
    on_sample: OnSample | None = None,
) -> PacedResult:
    """Send at ``rate`` per second for ``duration_s`` (open loop, at most ``concurrency`` in flight)."""
    url = base_url + "/v1/messages"
    total = int(rate * duration_s)
    samples: list[Sample] = []
    max_lag = 0.0
    next_index = 0
    start = time.monotonic() + 0.1

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, max_lag
        while next_index < total:
            i = next_index
            next_index += 1
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                max_lag = max(max_lag, -delay)
            n = first_index + i
            sample = await send_one(session, url, token, n, recipients[n % len(recipients)])
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector(concurrency), timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return PacedResult(samples, max_lag)
