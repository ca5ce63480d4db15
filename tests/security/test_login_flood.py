"""Login floods against a real WebApp on loopback: wrong passwords are limited per user and per client address
(429, 1015, then the right password works again after the window), argon2 work is bounded (measured in the
hasher's threads), and an honest client's ``/v1/health`` stays fast meanwhile.

The limits are in memory, so the database only sees a few reads: these run on SQLite (the backend matrix covers
the password and token paths in ``test_passwords.py`` and ``test_token_revocation.py``).
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from shared.config import DbEngine, DbSettings
from tests.security.conftest import (
    HealthProbe,
    MeasuredHasher,
    MiB,
    RssProbe,
    login_token,
    percentile,
    probing,
    running_webapp,
)
from tests.webapp.conftest import ADMIN_PASSWORD, VERSION, Api

FLOOD = 500
FLOOD_CONCURRENCY = 25
HEALTH_P99_BOUND_S = 5.0
"""Generous: alone on 2 cores the p99 is 0.1-0.3 s (printed), but the test machine is shared and has been seen at a
load of 6 with 2.3 s; an unthrottled flood instead takes 500 argon2 checks (tens of seconds, FLOOD_BUDGET_S)."""
REFUSAL_BOUND_S = 2.0
FLOOD_BUDGET_S = 30.0
"""Locked out, the flood is answered in about a second; checking every password takes tens of seconds."""
META = {"api_status": "stable", "version": VERSION}


@pytest.fixture
def sqlite(tmp_path: Path) -> DbSettings:
    return DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "openprem.db")


def _code(body: dict) -> int:
    return int(body["errors"][0]["code"])


async def _wrong_logins(api: Api, users: list[str], concurrency: int, headers: list[dict] | None = None) -> list:
    """One wrong login per entry of ``users`` (bounded concurrency): ``(status, code, Retry-After)`` each."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[int, int, str | None]:
        async with gate:
            extra = headers[i] if headers else None
            status, body, hdrs = await api.call(
                "POST", "/v1/users/login", basic=(users[i], f"Wrong-{i}!x"), token="", headers=extra
            )
            assert body["meta"] == META, body
            return status, _code(body), hdrs.get("Retry-After")

    return list(await asyncio.gather(*(one(i) for i in range(len(users)))))


async def test_wrong_login_flood_is_locked_out_and_the_server_stays_responsive(sqlite: DbSettings, tmp_path: Path):
    limit, window_s, bound = 5, 3.0, 2
    hasher = MeasuredHasher()  # the production parameters: 64 MiB per computation
    options = {
        "login_user_failures": limit,
        "login_address_failures": 10_000,
        "login_window_s": window_s,
        "password_hash_concurrency": bound,
    }
    async with running_webapp(sqlite, tmp_path / "data", hasher, **options) as (_, api):
        token = await login_token(api, "admin", "secret", new_password=ADMIN_PASSWORD)
        health, rss = HealthProbe(api, token), RssProbe()
        calls_before = hasher.calls
        started = time.monotonic()
        async with probing(health, rss), asyncio.timeout(FLOOD_BUDGET_S):
            answers = await _wrong_logins(api, ["admin"] * FLOOD, FLOOD_CONCURRENCY)
        elapsed = time.monotonic() - started
        checked = sum(1 for status, _, _ in answers if status == 401)
        locked = [retry for status, code, retry in answers if (status, code) == (429, 1015)]
        print(
            f"\n{FLOOD} wrong logins in {elapsed:.2f}s: {checked} checked (401), {len(locked)} refused (429); "
            f"/v1/health p99 {health.p99 * 1000:.0f} ms over {len(health.latencies)} probes; "
            f"argon2 at once: {hasher.peak} (bound {bound}); RSS growth {rss.growth / MiB:.0f} MiB"
        )
        assert all((status, code) in {(401, 1005), (429, 1015)} for status, code, _ in answers)
        assert checked + len(locked) == FLOOD
        # At most `limit` password checks per window, however concurrent the flood (each window starts afresh).
        assert checked <= limit * (math.floor(elapsed / window_s) + 1), checked
        assert hasher.calls - calls_before == checked
        assert all(retry is not None and 1 <= int(retry) <= math.ceil(window_s) for retry in locked)
        assert set(health.statuses) == {200}
        assert health.p99 < HEALTH_P99_BOUND_S
        assert hasher.peak <= bound
        assert rss.growth < (bound + 2) * 64 * MiB

        # Locked out: even the right password waits for the window (fresh lock, so its timing is known).
        await asyncio.sleep(window_s)
        await _wrong_logins(api, ["admin"] * limit, limit)
        status, body, headers = await api.login(password=ADMIN_PASSWORD)
        assert (status, _code(body)) == (429, 1015)
        await asyncio.sleep(int(headers["Retry-After"]) + 0.2)
        status, body, _ = await api.login(password=ADMIN_PASSWORD)
        assert status == 200, body
        status, _, _ = await api.call("GET", "/v1/health", token=body["users"][0]["token"])
        assert status == 200


async def test_address_limit_counts_the_peer_not_x_forwarded_for(sqlite: DbSettings, tmp_path: Path):
    """Guessing across many usernames from one address, rotating ``X-Forwarded-For``, is limited by the peer."""
    options = {"login_user_failures": 1000, "login_address_failures": 5, "login_window_s": 60.0}
    async with running_webapp(sqlite, tmp_path / "data", **options) as (_, api):
        users = [f"user{i}" for i in range(12)]
        spoofed = [{"X-Forwarded-For": f"198.51.100.{i}"} for i in range(12)]
        answers = await _wrong_logins(api, users, 1, spoofed)
        assert [status for status, _, _ in answers] == [401] * 5 + [429] * 7
        # The right password from that address waits too (the address, not the user, is locked).
        status, body, _ = await api.login(password="secret", new_password=ADMIN_PASSWORD)
        assert (status, _code(body)) == (429, 1015)


async def test_trusted_proxy_names_the_client_and_the_user_limit_spans_addresses(sqlite: DbSettings, tmp_path: Path):
    options = {
        "login_user_failures": 6,
        "login_address_failures": 3,
        "login_window_s": 60.0,
        "trusted_proxies": ("127.0.0.1",),
    }
    async with running_webapp(sqlite, tmp_path / "data", **options) as (_, api):
        client = {"X-Forwarded-For": "203.0.113.1, 127.0.0.1"}  # a client, then a second proxy of ours
        answers = await _wrong_logins(api, [f"u{i}" for i in range(4)], 1, [client] * 4)
        assert [status for status, _, _ in answers] == [401, 401, 401, 429]
        # Another client behind the same proxy is not locked by the first.
        answers = await _wrong_logins(api, ["u9"], 1, [{"X-Forwarded-For": "203.0.113.2"}])
        assert [status for status, _, _ in answers] == [401]
        # A distributed guess at one user: every address is fresh, the user's own limit still holds.
        headers = [{"X-Forwarded-For": f"192.0.2.{i}"} for i in range(10)]
        answers = await _wrong_logins(api, ["admin"] * 10, 1, headers)
        assert [status for status, _, _ in answers] == [401] * 6 + [429] * 4


async def test_concurrent_password_hashes_never_exceed_the_bound(sqlite: DbSettings, tmp_path: Path):
    """The production argon2 parameters (64 MiB each): at most `bound` run at once, the excess beyond the queue
    is answered 503 (1016) at once, and memory grows by about `bound` hashes, not by the flood."""
    bound, queue, burst = 2, 6, 40
    hasher = MeasuredHasher()
    assert hasher.memory_cost == 64 * 1024 == PasswordHasher().memory_cost  # KiB: what the webapp runs with
    options = {
        "login_user_failures": 10_000,
        "login_address_failures": 10_000,
        "password_hash_concurrency": bound,
        "password_hash_queue": queue,
    }
    async with running_webapp(sqlite, tmp_path / "data", hasher, **options) as (_, api):
        token = await login_token(api, "admin", "secret", new_password=ADMIN_PASSWORD)
        # Open the burst's connections first, so a refusal's latency is the server's and not a TLS handshake's.
        await asyncio.gather(*(api.call("GET", "/v1/health", token=token) for _ in range(burst + 1)))
        health, rss = HealthProbe(api, token), RssProbe()
        hasher.peak = 0

        async def timed(i: int) -> tuple[int, int, float, str | None]:
            started = time.perf_counter()
            status, body, headers = await api.login(password=f"Wrong-{i}!x")
            return status, _code(body), time.perf_counter() - started, headers.get("Retry-After")

        async with probing(health, rss):
            answers = await asyncio.gather(*(timed(i) for i in range(burst)))
        refused = [latency for status, code, latency, retry in answers if (status, code, retry) == (503, 1016, "1")]
        checked = [latency for status, code, latency, _ in answers if (status, code) == (401, 1005)]
        print(
            f"\n{burst} concurrent wrong logins: {len(checked)} checked, {len(refused)} refused 503 "
            f"(slowest refusal {max(refused, default=0) * 1000:.0f} ms); argon2 at once: {hasher.peak} (bound "
            f"{bound}); RSS growth {rss.growth / MiB:.0f} MiB; /v1/health p99 {health.p99 * 1000:.0f} ms"
        )
        assert len(checked) + len(refused) == burst
        assert refused and len(checked) >= bound  # how many get in depends on how fast the burst arrives
        assert hasher.peak == bound
        # Refused at once, not after waiting for argon2.
        assert max(refused) < REFUSAL_BOUND_S and percentile(refused, 0.5) < percentile(checked, 0.5)
        assert rss.growth < (bound + 2) * 64 * MiB
        assert set(health.statuses) == {200} and health.p99 < HEALTH_P99_BOUND_S
        # The gate is free again afterwards.
        status, _, _ = await api.login(password=ADMIN_PASSWORD)
        assert status == 200
