"""Password changes against a real WebApp, on every backend: a stolen token alone cannot change the password,
a change revokes the user's other tokens, the first-login change still works, and one password rule holds
wherever a password is set."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shared.config import DbSettings
from tests.security.conftest import login_token, running_webapp
from tests.webapp.conftest import ADMIN_PASSWORD, VERSION, Api

DEV_PASSWORD = "Dev-Pass1!"
NEW_PASSWORD = "Dev-Pass2!"
META = {"api_status": "stable", "version": VERSION}


def _error(body: dict) -> tuple[int, str]:
    assert body["meta"] == META and "errors" in body, body
    return int(body["errors"][0]["code"]), str(body["errors"][0].get("details", ""))


async def _admin_and_dev(api: Api) -> str:
    api.token = await login_token(api, "admin", "secret", new_password=ADMIN_PASSWORD)
    status, body, _ = await api.call("POST", "/v1/users", {"username": "dev", "password": DEV_PASSWORD})
    assert status == 201, body
    return await login_token(api, "dev", DEV_PASSWORD)


async def test_a_stolen_token_cannot_change_the_password(backend: DbSettings, tmp_path: Path):
    async with running_webapp(backend, tmp_path / "data", login_user_failures=3, login_window_s=2.0) as (_, api):
        stolen = await _admin_and_dev(api)
        status, body, _ = await api.call("PUT", "/v1/users/dev", {"password": NEW_PASSWORD}, token=stolen)
        assert (status, _error(body)[0]) == (400, 1008)
        assert "current_password" in _error(body)[1]
        for guess in ("Guess-1!a", "Guess-2!a"):
            change = {"password": NEW_PASSWORD, "current_password": guess}
            status, body, _ = await api.call("PUT", "/v1/users/dev", change, token=stolen)
            assert (status, _error(body)[0]) == (401, 1005)
        # Guessing through the token is throttled like a login: the third wrong one locks the user.
        change = {"password": NEW_PASSWORD, "current_password": "Guess-3!a"}
        status, body, _ = await api.call("PUT", "/v1/users/dev", change, token=stolen)
        assert (status, _error(body)[0]) == (401, 1005)
        change = {"password": NEW_PASSWORD, "current_password": DEV_PASSWORD}
        status, body, headers = await api.call("PUT", "/v1/users/dev", change, token=stolen)
        assert (status, _error(body)[0]) == (429, 1015) and int(headers["Retry-After"]) >= 1
        # Nothing changed, and the token still works.
        status, _, _ = await api.call("GET", "/v1/users/dev", token=stolen)
        assert status == 200
        await asyncio.sleep(int(headers["Retry-After"]) + 0.2)
        status, body, _ = await api.login("dev", NEW_PASSWORD)
        assert (status, _error(body)[0]) == (401, 1005)
        assert await login_token(api, "dev", DEV_PASSWORD)


async def test_changing_ones_password_revokes_the_other_tokens(backend: DbSettings, tmp_path: Path):
    async with running_webapp(backend, tmp_path / "data") as (_, api):
        used = await _admin_and_dev(api)
        other = await login_token(api, "dev", DEV_PASSWORD)
        for token in (used, other):  # both valid, and cached by this webapp
            assert (await api.call("GET", "/v1/users/dev", token=token))[0] == 200
        change = {"password": NEW_PASSWORD, "current_password": DEV_PASSWORD}
        status, body, _ = await api.call("PUT", "/v1/users/dev", change, token=used)
        assert (status, body["users"]) == (200, [{"username": "dev"}])
        assert (await api.call("GET", "/v1/users/dev", token=used))[0] == 200  # the one used for the change
        status, body, _ = await api.call("GET", "/v1/users/dev", token=other)
        assert (status, _error(body)[0]) == (401, 1005)
        status, body, _ = await api.login("dev", DEV_PASSWORD)
        assert (status, _error(body)[0]) == (401, 1005)
        assert await login_token(api, "dev", NEW_PASSWORD)
        # The admin's tokens are not touched by dev's change.
        assert (await api.call("GET", "/v1/health"))[0] == 200


async def test_a_password_change_at_login_or_by_the_admin_revokes_every_earlier_token(
    backend: DbSettings, tmp_path: Path
):
    async with running_webapp(backend, tmp_path / "data") as (_, api):
        earlier = await _admin_and_dev(api)
        fresh = await login_token(api, "dev", DEV_PASSWORD, new_password=NEW_PASSWORD)
        assert (await api.call("GET", "/v1/users/dev", token=fresh))[0] == 200
        status, body, _ = await api.call("GET", "/v1/users/dev", token=earlier)
        assert (status, _error(body)[0]) == (401, 1005)
        # ROLE_ADMIN resets dev's password (no current_password needed): every dev token dies.
        status, _, _ = await api.call("PUT", "/v1/users/dev", {"password": "Dev-Pass3!"})
        assert status == 200
        status, body, _ = await api.call("GET", "/v1/users/dev", token=fresh)
        assert (status, _error(body)[0]) == (401, 1005)
        assert await login_token(api, "dev", "Dev-Pass3!")


async def test_first_login_forced_change_still_works(backend: DbSettings, tmp_path: Path):
    async with running_webapp(backend, tmp_path / "data") as (_, api):
        status, body, headers = await api.login(password="secret")
        assert (status, _error(body)[0]) == (401, 1024) and headers["WWW-Authenticate"].startswith("Basic")
        status, body, _ = await api.login(password="secret", new_password="secret")
        assert (status, _error(body)[0]) == (400, 1009)
        token = await login_token(api, "admin", "secret", new_password=ADMIN_PASSWORD)
        assert (await api.call("GET", "/v1/health", token=token))[0] == 200
        status, body, _ = await api.login(password="secret")
        assert (status, _error(body)[0]) == (401, 1005)
        assert await login_token(api, "admin", ADMIN_PASSWORD)  # no second forced change


async def test_one_password_rule_wherever_a_password_is_set(backend: DbSettings, tmp_path: Path):
    weak = ["Short1!", "nouppercase1!", "NOLOWERCASE1!", "NoDigits!!", "NoSpecial123", "Aa1!" + "a" * 61]
    async with running_webapp(backend, tmp_path / "data") as (_, api):
        dev = await _admin_and_dev(api)
        for password in weak:
            places = [
                ("POST", "/v1/users", {"username": "eve", "password": password}, api.token),
                ("PUT", "/v1/users/dev", {"password": password}, api.token),  # ROLE_ADMIN resets
                ("PUT", "/v1/users/dev", {"password": password, "current_password": DEV_PASSWORD}, dev),
            ]
            for method, path, payload, token in places:
                status, body, _ = await api.call(method, path, payload, token=token)
                assert (status, _error(body)[0]) == (400, 1009), (path, password)
                assert _error(body)[1].startswith("password must"), body
            status, body, _ = await api.login("dev", DEV_PASSWORD, new_password=password)
            assert (status, _error(body)[0]) == (400, 1009), password
            assert _error(body)[1].startswith("password must"), body
        # The same password again is no change.
        change = {"password": DEV_PASSWORD, "current_password": DEV_PASSWORD}
        status, body, _ = await api.call("PUT", "/v1/users/dev", change, token=dev)
        assert (status, _error(body)[0]) == (400, 1009)
        # Nothing above changed anything: dev still logs in with its password and its token works.
        assert await login_token(api, "dev", DEV_PASSWORD)
        assert (await api.call("GET", "/v1/users/dev", token=dev))[0] == 200
        status, body, _ = await api.call("GET", "/v1/users/eve")
        assert status == 404
