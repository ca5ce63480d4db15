"""Two WebApps on one database: a token revoked through one (logout, a password change) is refused by the other
within ``WA_WEB_TOKEN_CACHE_TTL`` (at once with 0), and at once by the one that revoked it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from shared.config import DbSettings
from tests.security.conftest import login_token, running_webapp
from tests.webapp.conftest import ADMIN_PASSWORD, Api

SHARED_KEY = "every-webapp-of-this-install-shares-this-key"
MARGIN_S = 0.5
"""Above the cache lifetime: one poll interval and a request's round trip on a busy machine."""


async def _refused_after(api: Api, token: str, revoked_at: float, bound_s: float) -> float:
    """Seconds from ``revoked_at`` until ``api`` refuses ``token``; fails once ``bound_s`` has passed."""
    while True:
        status, _, _ = await api.call("GET", "/v1/health", token=token)
        elapsed = time.monotonic() - revoked_at
        if status == 401:
            return elapsed
        assert status == 200
        assert elapsed < bound_s, f"revoked token still accepted after {elapsed:.2f}s"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("cache_ttl_s", [0.0, 1.0])
async def test_a_revoked_token_is_refused_by_every_webapp_within_the_cache_ttl(
    backend: DbSettings, tmp_path: Path, cache_ttl_s: float
):
    options = {"jwt_crypto_key": SHARED_KEY, "token_cache_ttl_s": cache_ttl_s}
    async with contextlib.AsyncExitStack() as stack:
        _, one = await stack.enter_async_context(running_webapp(backend, tmp_path / "one", **options))
        _, two = await stack.enter_async_context(running_webapp(backend, tmp_path / "two", **options))
        bound_s = cache_ttl_s + MARGIN_S

        # Logout through one webapp.
        token = await login_token(one, "admin", "secret", new_password=ADMIN_PASSWORD)
        assert (await two.call("GET", "/v1/health", token=token))[0] == 200  # checked (and cached) by the other
        assert (await one.call("POST", "/v1/users/logout", token=token))[0] == 200
        revoked_at = time.monotonic()
        assert (await one.call("GET", "/v1/health", token=token))[0] == 401
        logout_s = await _refused_after(two, token, revoked_at, bound_s)

        # A password change through one webapp revokes the user's other tokens on the other.
        used = await login_token(one, "admin", ADMIN_PASSWORD)
        other = await login_token(two, "admin", ADMIN_PASSWORD)
        assert (await two.call("GET", "/v1/health", token=other))[0] == 200
        change = {"password": "N3w-Secret!2", "current_password": ADMIN_PASSWORD}
        assert (await one.call("PUT", "/v1/users/admin", change, token=used))[0] == 200
        revoked_at = time.monotonic()
        change_s = await _refused_after(two, other, revoked_at, bound_s)
        assert (await two.call("GET", "/v1/health", token=used))[0] == 200  # the one used for the change lives

        print(f"\ncache ttl {cache_ttl_s}s: refused by the other webapp after {logout_s:.2f}s / {change_s:.2f}s")
        if cache_ttl_s == 0:
            assert logout_s < MARGIN_S and change_s < MARGIN_S  # the first request after the revocation
