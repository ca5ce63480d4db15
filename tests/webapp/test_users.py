"""``/v1/users``: roles, password rules and token lifetimes (reference §2.2), on every database backend."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from tests.webapp.conftest import ADMIN_PASSWORD, VERSION, Api
from webapp.app import WebApp
from webapp.auth import load_jwt_key

DEV_PASSWORD = "Dev-Pass1!"


def _code(body: dict) -> int:
    return int(body["errors"][0]["code"])


def _is_envelope_401(status: int, body: dict) -> bool:
    return status == 401 and _code(body) == 1005 and body["meta"] == {"api_status": "stable", "version": VERSION}


async def _create(admin: Api, username: str = "dev", password: str = DEV_PASSWORD) -> None:
    status, body, _ = await admin.call("POST", "/v1/users", {"username": username, "password": password})
    assert status == 201, body


async def _token(api: Api, username: str = "dev", password: str = DEV_PASSWORD) -> str:
    status, body, _ = await api.login(username, password)
    assert status == 200, body
    return str(body["users"][0]["token"])


async def test_only_admin_manages_users(admin: Api) -> None:
    await _create(admin)
    dev = await _token(admin)
    # A ROLE_USER cannot create, delete, read or change other users, nor touch application settings.
    cases = [
        ("POST", "/v1/users", {"username": "eve", "password": DEV_PASSWORD}),
        ("DELETE", "/v1/users/admin", None),
        ("DELETE", "/v1/users/dev", None),  # not even itself
        ("GET", "/v1/users/admin", None),
        ("PUT", "/v1/users/admin", {"password": "Hijack-1!"}),
        ("GET", "/v1/settings/application", None),
        ("PATCH", "/v1/settings/application", {"sent_status": True}),
        ("DELETE", "/v1/settings/application", None),
    ]
    for method, path, body in cases:
        status, answer, _ = await admin.call(method, path, body, token=dev)
        assert (status, _code(answer)) == (403, 1005), (method, path)
    # ...but reads and changes itself.
    status, body, _ = await admin.call("GET", "/v1/users/dev", token=dev)
    assert (status, body["users"]) == (200, [{"ROLES": "ROLE_USER", "username": "dev"}])
    change = {"password": "Dev-Pass2!", "current_password": DEV_PASSWORD}
    status, body, _ = await admin.call("PUT", "/v1/users/dev", change, token=dev)
    assert (status, body["users"]) == (200, [{"username": "dev"}])
    assert await _token(admin, password="Dev-Pass2!")
    # The admin reads and changes anyone, and is the only ROLE_ADMIN.
    status, body, _ = await admin.call("GET", "/v1/users/dev")
    assert body["users"] == [{"ROLES": "ROLE_USER", "username": "dev"}]
    status, _, _ = await admin.call("PUT", "/v1/users/dev", {"password": "Dev-Pass3!"})
    assert status == 200
    assert await _token(admin, password="Dev-Pass3!")
    status, body, _ = await admin.call("GET", "/v1/users/admin")
    assert body["users"] == [{"ROLES": "ROLE_ADMIN", "username": "admin"}]


async def test_create_validation(admin: Api) -> None:
    cases = [
        ({"username": "dev"}, 400, 1008),
        ({"password": DEV_PASSWORD}, 400, 1008),
        ({"username": "dev", "password": DEV_PASSWORD, "role": "ROLE_ADMIN"}, 400, 1010),  # no self-promotion
        ({"username": "bad name", "password": DEV_PASSWORD}, 400, 1009),
        ({"username": "x" * 65, "password": DEV_PASSWORD}, 400, 1009),
        ({"username": 7, "password": DEV_PASSWORD}, 400, 1009),
        ({"username": "dev", "password": 12345678}, 400, 1009),
        ({"username": "dev", "password": "weak"}, 400, 1009),
        ({"username": "admin", "password": DEV_PASSWORD}, 409, 1004),
        ({"username": "ADMIN", "password": DEV_PASSWORD}, 409, 1004),  # usernames are case-insensitive
    ]
    for payload, status, code in cases:
        got, body, _ = await admin.call("POST", "/v1/users", payload)
        assert (got, _code(body)) == (status, code), payload
    status, body, _ = await admin.call("POST", "/v1/users", data="{nope")
    assert (status, _code(body)) == (400, 1025)


@pytest.mark.parametrize(
    "password",
    [
        "Short1!",  # 7 characters
        "A1!" + "a" * 62,  # 65 characters
        "alllowercase1!",
        "ALLUPPERCASE1!",
        "NoDigitsHere!",
        "NoSpecial123",
        "Space Is Not1",  # a space is not one of the special characters
    ],
)
async def test_password_rule_on_create_and_update(admin: Api, password: str) -> None:
    status, body, _ = await admin.call("POST", "/v1/users", {"username": "dev", "password": password})
    assert (status, _code(body)) == (400, 1009)
    assert "password must" in body["errors"][0]["details"]
    change = {"password": password, "current_password": ADMIN_PASSWORD}
    status, body, _ = await admin.call("PUT", "/v1/users/admin", change)
    assert (status, _code(body)) == (400, 1009)


async def test_password_rule_boundaries(admin: Api) -> None:
    current = ADMIN_PASSWORD
    for ok in ["Aa1!aaaa", "A1!" + "a" * 61]:  # exactly 8 and exactly 64 characters
        status, body, _ = await admin.call("PUT", "/v1/users/admin", {"password": ok, "current_password": current})
        assert status == 200, (ok, body)
        current = ok


async def test_usernames_are_case_insensitive(admin: Api) -> None:
    await _create(admin, "Ops.Team")
    status, body, _ = await admin.call("GET", "/v1/users/ops.team")
    assert body["users"] == [{"ROLES": "ROLE_USER", "username": "ops.team"}]
    token = await _token(admin, "OPS.TEAM")
    status, body, _ = await admin.call("GET", "/v1/users/Ops.Team", token=token)
    assert (status, body["users"][0]["username"]) == (200, "ops.team")
    status, _, _ = await admin.login("ops team", DEV_PASSWORD)  # not a possible name
    assert status == 401


async def test_update_and_delete_errors(admin: Api) -> None:
    cases = [
        ("PUT", "/v1/users/nobody", {"password": DEV_PASSWORD}, 404, 1006),
        ("PUT", "/v1/users/admin", {}, 400, 1008),
        ("PUT", "/v1/users/admin", {"password": DEV_PASSWORD, "role": "x"}, 400, 1010),
        ("GET", "/v1/users/nobody", None, 404, 1006),
        ("GET", "/v1/users/bad%20name", None, 404, 1006),
        ("DELETE", "/v1/users/nobody", None, 404, 1006),
        ("DELETE", "/v1/users/admin", None, 400, 1009),
        ("DELETE", "/v1/users/Admin", None, 400, 1009),
    ]
    for method, path, payload, status, code in cases:
        got, body, _ = await admin.call(method, path, payload)
        assert (got, _code(body)) == (status, code), (method, path)


async def test_logout_revokes_every_token_but_only_of_that_user(admin: Api) -> None:
    await _create(admin)
    first, second = await _token(admin), await _token(admin)
    # A new login leaves older tokens valid.
    for token in (first, second):
        status, _, _ = await admin.call("GET", "/v1/users/dev", token=token)
        assert status == 200
    status, _, _ = await admin.call("POST", "/v1/users/logout", token=second)
    assert status == 200
    for token in (first, second):
        status, body, _ = await admin.call("GET", "/v1/users/dev", token=token)
        assert _is_envelope_401(status, body)
    status, _, _ = await admin.call("GET", "/v1/health")  # the admin's token is untouched
    assert status == 200
    assert await _token(admin)  # and dev can log in again


async def test_admin_password_reset_revokes_the_users_tokens(admin: Api) -> None:
    await _create(admin)
    token = await _token(admin)
    status, _, _ = await admin.call("PUT", "/v1/users/dev", {"password": "Dev-Pass2!"})
    assert status == 200
    status, body, _ = await admin.call("GET", "/v1/users/dev", token=token)
    assert _is_envelope_401(status, body)  # unlike the original (reference §2.2): a reset ends every session
    status, body, _ = await admin.login("dev", DEV_PASSWORD)
    assert (status, _code(body)) == (401, 1005)
    assert await _token(admin, password="Dev-Pass2!")


async def test_deleting_a_user_revokes_its_tokens(admin: Api) -> None:
    await _create(admin)
    token = await _token(admin)
    status, _, _ = await admin.call("GET", "/v1/users/dev", token=token)
    assert status == 200  # cached now
    status, body, _ = await admin.call("DELETE", "/v1/users/dev")
    assert (status, body["users"]) == (200, [{"username": "dev"}])
    status, body, _ = await admin.call("GET", "/v1/health", token=token)
    assert _is_envelope_401(status, body)
    status, body, _ = await admin.login("dev", DEV_PASSWORD)
    assert _is_envelope_401(status, body)
    # Re-creating the name does not bring the old token back.
    await _create(admin)
    status, body, _ = await admin.call("GET", "/v1/health", token=token)
    assert _is_envelope_401(status, body)


async def test_expired_and_revoked_tokens_are_401_with_the_envelope(admin: Api, webapp: WebApp, tmp_path) -> None:
    key = load_jwt_key(webapp._settings.web, tmp_path / "data")
    now = datetime.now(UTC)
    claims = {"sub": "admin", "iat": int((now - timedelta(days=8)).timestamp()), "exp": int(now.timestamp()) - 5}
    expired = jwt.encode({**claims, "jti": "old"}, key, algorithm="HS256")
    assert webapp.storage is not None
    await webapp.storage.add_token(
        "old",
        "admin",
        hashlib.sha256(expired.encode()).hexdigest(),
        now - timedelta(days=8),
        now - timedelta(seconds=5),
    )
    status, body, headers = await admin.call("GET", "/v1/health", token=expired)
    assert _is_envelope_401(status, body)
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await admin.call("POST", "/v1/users/logout")
    assert status == 200
    status, body, _ = await admin.call("GET", "/v1/health")
    assert _is_envelope_401(status, body)
    status, body, _ = await admin.call("POST", "/v1/users/logout")  # a revoked token cannot log out again
    assert _is_envelope_401(status, body)
    status, _, _ = await admin.login(password=ADMIN_PASSWORD)
    assert status == 200
