"""Login, password change, bearer tokens, logout and roles, on every database backend."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import jwt

from tests.webapp.conftest import ADMIN_PASSWORD, VERSION, Api
from webapp.app import WebApp
from webapp.auth import load_jwt_key
from webapp.storage import Role


def _code(body) -> int:
    return int(body["errors"][0]["code"])


async def test_first_login_requires_new_password(api: Api):
    status, body, _ = await api.login(password="secret")
    assert status == 401
    assert _code(body) == 1024
    assert body["meta"] == {"api_status": "stable", "version": VERSION}
    assert "token" not in str(body)


async def test_bad_credentials_are_401_1005(api: Api):
    for user, password in [("admin", "wrong"), ("nobody", "secret")]:
        status, body, headers = await api.login(user, password)
        assert (status, _code(body)) == (401, 1005)
        assert headers["WWW-Authenticate"].startswith("Basic")
    status, body, _ = await api.call("POST", "/v1/users/login", token="")
    assert (status, _code(body)) == (401, 1005)


async def test_weak_new_password_is_rejected(api: Api):
    for weak in ["Short1!", "alllowercase1!", "ALLUPPERCASE1!", "NoDigits!!", "NoSpecial123", "A1!" + "a" * 62]:
        status, body, _ = await api.login(password="secret", new_password=weak)
        assert (status, _code(body)) == (400, 1009), weak
    status, body, _ = await api.login(password="secret")
    assert _code(body) == 1024  # nothing was changed


async def test_login_body_is_validated(api: Api):
    basic = ("admin", "secret")
    status, body, _ = await api.call("POST", "/v1/users/login", data="{nope", basic=basic)
    assert (status, _code(body)) == (400, 1025)
    status, body, _ = await api.call("POST", "/v1/users/login", {"new_password": 12345678}, basic=basic)
    assert (status, _code(body)) == (400, 1009)
    status, body, _ = await api.call("POST", "/v1/users/login", {"password": "x"}, basic=basic)
    assert (status, _code(body)) == (400, 1010)


async def test_password_change_then_login(api: Api):
    status, body, headers = await api.login(password="secret", new_password=ADMIN_PASSWORD)
    assert status == 200
    assert headers["WWW-Authenticate"] == 'Basic realm="WhatsApp"'
    user = body["users"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", user["expires_after"])
    expires = datetime.strptime(user["expires_after"], "%Y-%m-%d %H:%M:%S+00:00").replace(tzinfo=UTC)
    assert abs(expires - datetime.now(UTC) - timedelta(days=7)) < timedelta(minutes=1)

    status, body, _ = await api.login(password="secret")
    assert (status, _code(body)) == (401, 1005)
    status, body, _ = await api.login(password=ADMIN_PASSWORD)
    assert status == 200, body
    token = body["users"][0]["token"]
    status, body, _ = await api.call("GET", "/v1/health", token=token)
    assert status == 200
    assert body["health"] == {"gateway_status": "connected"}


async def test_requests_need_a_valid_bearer_token(admin: Api):
    good = admin.token
    assert good
    cases = {
        "missing": {},
        "basic": {"Authorization": "Basic YWRtaW46c2VjcmV0"},
        "garbage": {"Authorization": "Bearer not-a-jwt"},
        "tampered": {"Authorization": "Bearer " + good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")},
        "alg none": {
            "Authorization": "Bearer "
            + jwt.encode(jwt.decode(good, options={"verify_signature": False}), "", algorithm="none")
        },
    }
    for name, headers in cases.items():
        status, body, _ = await admin.call("GET", "/v1/health", token="", headers=headers)
        assert (status, _code(body)) == (401, 1005), name
        assert "meta" in body
    # Never from the query string.
    status, body, _ = await admin.call("GET", f"/v1/health?access_token={good}&token={good}", token="")
    assert status == 401


async def test_token_checks_the_database(admin: Api, webapp: WebApp, tmp_path):
    key = load_jwt_key(webapp._settings.web, tmp_path / "data")
    now = datetime.now(UTC)
    # Validly signed but expired.
    expired = jwt.encode(
        {
            "sub": "admin",
            "iat": int((now - timedelta(days=8)).timestamp()),
            "exp": int((now - timedelta(days=1)).timestamp()),
            "jti": "x1",
        },
        key,
        algorithm="HS256",
    )
    status, body, _ = await admin.call("GET", "/v1/health", token=expired)
    assert (status, _code(body)) == (401, 1005)
    # Validly signed, unexpired, but unknown to the database.
    forged = jwt.encode(
        {"sub": "admin", "iat": int(now.timestamp()), "exp": int((now + timedelta(days=1)).timestamp()), "jti": "x2"},
        key,
        algorithm="HS256",
    )
    status, _, _ = await admin.call("GET", "/v1/health", token=forged)
    assert status == 401
    # Known to the database but expired there (the row decides, not only the claim).
    assert webapp.storage is not None
    await webapp.storage.add_token(
        "x2", "admin", hashlib.sha256(forged.encode()).hexdigest(), now - timedelta(days=2), now - timedelta(seconds=1)
    )
    status, _, _ = await admin.call("GET", "/v1/health", token=forged)
    assert status == 401


async def test_logout_revokes_every_token_of_the_user(admin: Api):
    status, body, _ = await admin.login()
    second = body["users"][0]["token"]
    for token in (admin.token, second):
        status, _, _ = await admin.call("GET", "/v1/health", token=token)
        assert status == 200  # also fills the token cache
    status, body, _ = await admin.call("POST", "/v1/users/logout")
    assert status == 200
    assert body == {"meta": {"api_status": "stable", "version": VERSION}}
    for token in (admin.token, second):
        status, body, _ = await admin.call("GET", "/v1/health", token=token)
        assert (status, _code(body)) == (401, 1005)
    status, _, _ = await admin.login()
    assert status == 200  # logging in again works


async def test_non_admin_cannot_touch_settings(admin: Api, webapp: WebApp):
    assert webapp.auth is not None and webapp.storage is not None
    await webapp.storage.create_user("ops", await webapp.auth.hash_password("Ops-Pass1!"), Role.USER, False)
    status, body, _ = await admin.login("ops", "Ops-Pass1!")
    assert status == 200, body
    token = body["users"][0]["token"]
    for method in ("GET", "PATCH", "DELETE"):
        status, body, _ = await admin.call(method, "/v1/settings/application", {"sent_status": True}, token=token)
        assert (status, _code(body)) == (403, 1005), method
    status, _, _ = await admin.call("GET", "/v1/health", token=token)
    assert status == 200
    status, body, _ = await admin.call("GET", "/v1/users/ops", token=token)
    assert body["users"] == [{"ROLES": "ROLE_USER", "username": "ops"}]
    status, body, _ = await admin.call("GET", "/v1/users/admin", token=token)
    assert status == 403


async def test_user_management(admin: Api):
    status, body, _ = await admin.call("POST", "/v1/users", {"username": "dev", "password": "weak"})
    assert (status, _code(body)) == (400, 1009)
    status, body, _ = await admin.call("POST", "/v1/users", {"username": "dev", "password": "Dev-Pass1!"})
    assert status == 201 and body["users"] == [{"username": "dev"}]
    status, body, _ = await admin.call("POST", "/v1/users", {"username": "dev", "password": "Dev-Pass1!"})
    assert (status, _code(body)) == (409, 1004)
    status, body, _ = await admin.login("dev", "Dev-Pass1!")
    assert status == 200
    dev_token = body["users"][0]["token"]
    status, body, _ = await admin.call(
        "PUT", "/v1/users/dev", {"password": "Dev-Pass2!", "current_password": "Dev-Pass1!"}, token=dev_token
    )
    assert status == 200
    status, _, _ = await admin.login("dev", "Dev-Pass2!")
    assert status == 200
    status, body, _ = await admin.call("DELETE", "/v1/users/dev", token=dev_token)
    assert status == 403
    status, body, _ = await admin.call("DELETE", "/v1/users/dev")
    assert status == 200
    status, _, _ = await admin.call("GET", "/v1/health", token=dev_token)
    assert status == 401
    status, body, _ = await admin.call("DELETE", "/v1/users/admin")
    assert (status, _code(body)) == (400, 1009)
    status, body, _ = await admin.call("GET", "/v1/users/admin")
    assert body["users"] == [{"ROLES": "ROLE_ADMIN", "username": "admin"}]
