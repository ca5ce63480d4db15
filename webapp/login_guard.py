"""What keeps a login flood harmless: wrong-password counters and a bound on concurrent argon2 work.

``LoginThrottle`` counts wrong passwords per user and per client address; once either reaches its limit within
``WA_WEB_LOGIN_WINDOW`` seconds, further attempts answer 429 (1015, "Too many requests": the reference's
synchronous API rate limit; 429 "Rate limit hit" is the asynchronous per-number sending limit) with
``Retry-After`` until the window ends, without touching the database or argon2.  An attempt is counted *before*
its password is checked and uncounted on success, so a burst of concurrent guesses cannot overshoot the limit.

The counters live in each webapp's memory (bounded tables): with N webapps behind a round-robin balancer an
attacker gets at most N times the limits per window; sticky balancing makes them exact.  Memory is the
per-process concern anyway, and ``HashGate`` bounds it: at most ``WA_WEB_PASSWORD_HASH_CONCURRENCY`` hashes run
at once (64 MiB each with the default parameters), at most ``WA_WEB_PASSWORD_HASH_QUEUE`` wait, and the rest
answer 503 (1016, "System overloaded") at once instead of queueing memory and latency.

The client address is the TCP peer; ``X-Forwarded-For`` is believed only from ``WA_WEB_TRUSTED_PROXIES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from aiohttp import web
from pydantic import IPvAnyNetwork

from shared.config import WebSettings
from shared.errors import ErrorCode
from shared.tasks import finish_then_cancel
from webapp.envelope import HttpApiError

log = logging.getLogger("openprem.webapp.auth")

T = TypeVar("T")

MAX_TRACKED_KEYS = 10_000
"""Per table; the oldest entry goes first, so a flood of distinct names cannot grow memory."""
IPV6_CLIENT_PREFIX = 64
"""One IPv6 client usually holds a whole /64: count it as one address."""


class FailureCounter:
    """Failures per key in a window that starts at the key's first failure (bounded, in memory)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window_s = window_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (failures, window end)

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or ``None`` when it may now."""
        entry = self._live(key)
        if entry is None or entry[0] < self._limit:
            return None
        return entry[1] - self._clock()

    def add(self, key: str) -> bool:
        """Count one failure; True when this one reached the limit."""
        entry = self._live(key)
        failures, ends = entry if entry is not None else (0, self._clock() + self._window_s)
        self._entries[key] = (failures + 1, ends)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_TRACKED_KEYS:
            self._entries.popitem(last=False)
        return failures + 1 == self._limit

    def remove(self, key: str) -> None:
        """Take back one failure (the attempt succeeded, or never got to check the password)."""
        entry = self._live(key)
        if entry is not None:
            if entry[0] <= 1:
                del self._entries[key]
            else:
                self._entries[key] = (entry[0] - 1, entry[1])

    def reset(self, key: str) -> None:
        self._entries.pop(key, None)

    def _live(self, key: str) -> tuple[int, float] | None:
        entry = self._entries.get(key)
        if entry is not None and entry[1] <= self._clock():
            del self._entries[key]
            return None
        return entry


class LoginAttempt:
    """One password check admitted by ``LoginThrottle.begin``: counted as a failure until told otherwise."""

    def __init__(self, throttle: LoginThrottle, username: str | None, address: str) -> None:
        self._throttle = throttle
        self._username = username
        self._address = address
        self._open = True

    def succeeded(self) -> None:
        """The right password: the user's count starts again; the address keeps its other failures."""
        if self._open:
            self._open = False
            if self._username is not None:
                self._throttle.users.reset(self._username)
            self._throttle.addresses.remove(self._address)

    def abandoned(self) -> None:
        """The password was never judged (overload, a database error): it counts for nothing."""
        if self._open:
            self._open = False
            if self._username is not None:
                self._throttle.users.remove(self._username)
            self._throttle.addresses.remove(self._address)


class LoginThrottle:
    """Wrong-password limits per user and per client address (module docstring)."""

    def __init__(self, settings: WebSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.users = FailureCounter(settings.login_user_failures, settings.login_window_s, clock)
        self.addresses = FailureCounter(settings.login_address_failures, settings.login_window_s, clock)

    def begin(self, username: str | None, address: str) -> LoginAttempt:
        """Admit one password check, or raise 429 (1015) while the user or the address is locked.

        ``username`` is ``None`` for a name no user can have (only the address counts then).
        """
        waits = [self.addresses.retry_after(address)]
        if username is not None:
            waits.append(self.users.retry_after(username))
        locked = [wait for wait in waits if wait is not None]
        if locked:
            seconds = max(1, math.ceil(max(locked)))
            raise HttpApiError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"too many wrong logins; retry in {seconds} s",
                status=ErrorCode.TOO_MANY_REQUESTS.http_status,
                headers={"Retry-After": str(seconds)},
            )
        if username is not None and self.users.add(username):
            log.warning("logins for user %s locked: too many wrong passwords", username)
        if self.addresses.add(address):
            log.warning("logins from %s locked: too many wrong passwords", address)
        return LoginAttempt(self, username, address)


class HashGate:
    """At most ``concurrency`` argon2 computations at once, at most ``queue`` waiting; beyond that 503 (1016).

    A password check is admitted before it reads the user, so the excess of a flood costs neither a database
    read nor memory.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._admit = concurrency + queue
        self._admitted = 0

    @contextlib.contextmanager
    def admission(self) -> Iterator[None]:
        """One place among the running and waiting checks, or 503 (1016) at once when there is none."""
        if self._admitted >= self._admit:
            raise HttpApiError(
                ErrorCode.OVERLOADED,
                "too many password checks at once; retry shortly",
                status=ErrorCode.OVERLOADED.http_status,
                headers={"Retry-After": "1"},
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread once a slot is free (call it inside an ``admission``)."""
        async with self._slots:
            # A cancelled caller must not free the slot while its thread still holds the memory.
            return await finish_then_cancel(asyncio.to_thread(fn, *args))


def client_address(request: web.Request, trusted_proxies: Sequence[IPvAnyNetwork]) -> str:
    """The address a login counts against: the peer, or what trusted proxies say in ``X-Forwarded-For``.

    The header is read from the right (the hop nearest to us) and the first address that is not a trusted
    proxy is the client; a malformed entry stops the walk at the last proxy seen.
    """
    peer = request.remote or ""
    client = _parse(peer)
    if client is None:
        return peer
    if trusted_proxies and _trusted(client, trusted_proxies):
        hops = ",".join(request.headers.getall("X-Forwarded-For", ())).split(",")
        for hop in reversed(hops):
            parsed = _parse(hop.strip())
            if parsed is None:
                break
            client = parsed
            if not _trusted(parsed, trusted_proxies):
                break
    if client.version == 6:
        return str(ipaddress.ip_network(f"{client}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(client)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[IPvAnyNetwork]) -> bool:
    return any(address in network for network in proxies)
