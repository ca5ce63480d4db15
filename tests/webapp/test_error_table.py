"""One error table: every 4xx path of the API answers the code and HTTP status ``shared.errors.ErrorCode`` gives.

Each row is one way a request can fail, exercised over HTTPS against the real webapp (coreapp is the fake of
``conftest``; coreapp-side failures are injected as the ``ApiError`` coreapp would send).  The check is the
same for every row: the first error's code, its title from ``ErrorCode``, and the HTTP status — the code's own
unless the row names one of the documented overrides (``STATUS_OVERRIDES``).  A source scan keeps the table
single: no module but ``shared/errors.py`` spells out an error title.
"""

from __future__ import annotations

import ast
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.config import DbEngine, DbSettings
from shared.errors import ApiError, ErrorCode
from tests.webapp.conftest import ADMIN_PASSWORD, Api, FakeCore

E = ErrorCode
USER = "clerk"
USER_PASSWORD = "Cl3rk-Pass!"
BIG = "x" * (1024 * 1024 + 10)

STATUS_OVERRIDES: dict[tuple[ErrorCode, int], str] = {
    (E.ACCESS_DENIED, 401): "bad or missing credentials (1005 is 403 for permissions)",
    (E.NOT_FOUND, 405): "known path, method not allowed (Allow header says which)",
    (E.INVALID_REQUEST, 413): "JSON body larger than the limit",
    (E.INVALID_PARAMETER, 413): "media upload larger than the limit",
    (E.INVALID_PARAMETER, 415): "media type not on the allow-list",
}


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    code: ErrorCode
    status: int | None = None  # None: the code's own HTTP status
    json: Any = None
    data: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    as_user: str = "admin"  # admin | user | none | bogus
    core_error: tuple[str, ErrorCode] | None = None


CASES: list[Case] = [
    # --- auth (401 / 403) ---
    Case("no-token", "GET", "/v1/health", E.ACCESS_DENIED, 401, as_user="none"),
    Case("bogus-token", "GET", "/v1/health", E.ACCESS_DENIED, 401, as_user="bogus"),
    Case("basic-on-bearer", "GET", "/v1/health", E.ACCESS_DENIED, 401, headers={"Authorization": "Basic eDp5"}),
    Case("no-token-metrics", "GET", "/metrics", E.ACCESS_DENIED, 401, as_user="none"),
    Case("no-token-unknown-path", "GET", "/v1/nothing-here", E.ACCESS_DENIED, 401, as_user="none"),
    Case("user-on-admin-route", "GET", "/v1/settings/application", E.ACCESS_DENIED, as_user="user"),
    Case("user-on-other-user", "GET", "/v1/users/admin", E.ACCESS_DENIED, as_user="user"),
    Case("user-creates-user", "POST", "/v1/users", E.ACCESS_DENIED, json={"username": "a", "password": "b"},
         as_user="user"),
    Case("user-runs-gc", "PUT", "/v1/services/message/gc", E.ACCESS_DENIED, as_user="user"),
    Case("user-reads-support", "GET", "/v1/support", E.ACCESS_DENIED, as_user="user"),
    Case("user-registers", "POST", "/v1/account", E.ACCESS_DENIED, json={}, as_user="user"),
    Case("user-two-step", "POST", "/v1/settings/account/two-step", E.ACCESS_DENIED, json={"pin": "123456"},
         as_user="user"),
    Case("user-backup", "POST", "/v1/settings/backup", E.ACCESS_DENIED, json={"password": "x"}, as_user="user"),
    Case("user-profile-about", "GET", "/v1/settings/profile/about", E.ACCESS_DENIED, as_user="user"),
    Case("user-webhook-ca", "GET", "/v1/certificates/webhooks/ca", E.ACCESS_DENIED, as_user="user"),
    # --- 1025 invalid request ---
    Case("malformed-json", "POST", "/v1/users", E.INVALID_REQUEST, data="{not json"),
    Case("json-array", "POST", "/v1/users", E.INVALID_REQUEST, data="[1, 2]"),
    Case("empty-body", "POST", "/v1/messages", E.INVALID_REQUEST, data=""),
    Case("body-too-large", "POST", "/v1/messages", E.INVALID_REQUEST, 413, data=BIG),
    Case("malformed-json-settings", "PATCH", "/v1/settings/application", E.INVALID_REQUEST, data="{"),
    # --- 1008 missing parameter ---
    Case("user-missing-password", "POST", "/v1/users", E.MISSING_PARAMETER, json={"username": "bob"}),
    Case("message-missing-type", "POST", "/v1/messages", E.MISSING_PARAMETER, json={"to": "12025550199"}),
    Case("message-missing-to", "POST", "/v1/messages", E.MISSING_PARAMETER,
         json={"type": "text", "text": {"body": "x"}}),
    Case("register-missing-cert", "POST", "/v1/account", E.MISSING_PARAMETER,
         json={"cc": "1", "phone_number": "5550000", "method": "sms"}),
    Case("verify-missing-code", "POST", "/v1/account/verify", E.MISSING_PARAMETER, json={}),
    Case("contacts-missing", "POST", "/v1/contacts", E.MISSING_PARAMETER, json={"blocking": "wait"}),
    Case("backup-missing-password", "POST", "/v1/settings/backup", E.MISSING_PARAMETER, json={}),
    Case("media-without-type", "POST", "/v1/media", E.MISSING_PARAMETER, data=b"\x89PNG", headers={"Content-Type": ""}),
    Case("webhook-ca-empty", "POST", "/v1/certificates/webhooks/ca", E.MISSING_PARAMETER, data=" ",
         headers={"Content-Type": "text/plain"}),
    # --- 1010 unexpected parameter ---
    Case("user-extra-key", "POST", "/v1/users", E.UNEXPECTED_PARAMETER,
         json={"username": "bob", "password": "Pa55-word!", "role": "admin"}),
    Case("settings-unknown-key", "PATCH", "/v1/settings/application", E.UNEXPECTED_PARAMETER, json={"nope": 1}),
    Case("message-extra-key", "POST", "/v1/messages", E.UNEXPECTED_PARAMETER,
         json={"to": "12025550199", "type": "text", "text": {"body": "x"}, "colour": "red"}),
    # --- 1009 invalid parameter ---
    Case("weak-password", "POST", "/v1/users", E.INVALID_PARAMETER, json={"username": "bob", "password": "short"}),
    Case("delete-admin", "DELETE", "/v1/users/admin", E.INVALID_PARAMETER),
    Case("settings-bad-value", "PATCH", "/v1/settings/application", E.INVALID_PARAMETER,
         json={"callback_backoff_delay_ms": "soon"}),
    Case("settings-http-webhook", "PATCH", "/v1/settings/application", E.INVALID_PARAMETER,
         json={"webhooks": {"url": "http://example.com/hook"}}),
    Case("register-bad-method", "POST", "/v1/account", E.INVALID_PARAMETER,
         json={"cc": "1", "phone_number": "5550000", "method": "fax", "cert": "Y2VydA=="}),
    Case("message-unknown-type", "POST", "/v1/messages", E.INVALID_PARAMETER, json={"to": "1", "type": "fax"}),
    Case("message-bad-recipient", "POST", "/v1/messages", E.INVALID_PARAMETER,
         json={"to": "call me", "type": "text", "text": {"body": "x"}}),
    Case("two-step-bad-pin", "POST", "/v1/settings/account/two-step", E.INVALID_PARAMETER, json={"pin": "12"}),
    Case("shards-bad-count", "POST", "/v1/account/shards", E.INVALID_PARAMETER,
         json={"cc": "1", "phone_number": "5550000", "shards": 3}),
    Case("stats-bad-format", "GET", "/v1/stats/app?format=xml", E.INVALID_PARAMETER),
    Case("user-reads-webhook-log", "GET", "/v1/webhooks/log", E.ACCESS_DENIED, as_user="user"),
    Case("webhook-log-limit-zero", "GET", "/v1/webhooks/log?limit=0", E.INVALID_PARAMETER),
    Case("webhook-log-limit-text", "GET", "/v1/webhooks/log?limit=many", E.INVALID_PARAMETER),
    Case("webhook-log-unknown-query", "GET", "/v1/webhooks/log?since=1", E.INVALID_PARAMETER),
    Case("user-lists-dead-webhooks", "GET", "/v1/webhooks/dead", E.ACCESS_DENIED, as_user="user"),
    Case("user-replays-dead-webhooks", "POST", "/v1/webhooks/dead/replay", E.ACCESS_DENIED, as_user="user"),
    Case("user-replays-a-dead-webhook", "POST", "/v1/webhooks/dead/abc/replay", E.ACCESS_DENIED, as_user="user"),
    Case("dead-webhooks-limit-zero", "GET", "/v1/webhooks/dead?limit=0", E.INVALID_PARAMETER),
    Case("replay-limit-too-big", "POST", "/v1/webhooks/dead/replay?limit=10001", E.INVALID_PARAMETER),
    Case("replay-unknown-query", "POST", "/v1/webhooks/dead/abc/replay?all=1", E.INVALID_PARAMETER),
    Case("identity-bad-body", "PUT", "/v1/contacts/12025550199/identity", E.MISSING_PARAMETER, json={}),
    Case("metrics-bad-format", "GET", "/metrics?format=xml", E.INVALID_PARAMETER),
    Case("groups", "GET", "/v1/groups", E.INVALID_PARAMETER),
    Case("groups-any-method", "PATCH", "/v1/groups/123/admins", E.INVALID_PARAMETER, json={"wa_ids": ["1"]}),
    Case("stickerpacks", "GET", "/v1/stickerpacks", E.INVALID_PARAMETER),
    Case("media-unsupported-type", "POST", "/v1/media", E.INVALID_PARAMETER, 415, data=b"MZ\x90\x00",
         headers={"Content-Type": "application/x-msdownload"}),
    Case("media-empty", "POST", "/v1/media", E.INVALID_PARAMETER, data=b"", headers={"Content-Type": "image/png"}),
    # --- 1001 / 1002 ---
    Case("text-too-long", "POST", "/v1/messages", E.MESSAGE_TOO_LONG,
         json={"to": "12025550199", "type": "text", "text": {"body": "x" * 4097}}),
    Case("group-recipient", "POST", "/v1/messages", E.INVALID_RECIPIENT_TYPE,
         json={"to": "12025550199", "type": "text", "recipient_type": "group", "text": {"body": "x"}}),
    # --- 1004 / 1006 / 405 ---
    Case("duplicate-user", "POST", "/v1/users", E.RESOURCE_EXISTS, json={"username": USER, "password": USER_PASSWORD}),
    Case("unknown-endpoint", "GET", "/v1/nothing-here", E.NOT_FOUND),
    Case("unknown-user", "GET", "/v1/users/nobody", E.NOT_FOUND),
    Case("delete-unknown-user", "DELETE", "/v1/users/nobody", E.NOT_FOUND),
    Case("unknown-media", "GET", "/v1/media/not-a-media-id", E.NOT_FOUND),
    Case("bad-message-id", "PUT", "/v1/messages/%21%21", E.NOT_FOUND, json={"status": "read"}),
    Case("method-not-allowed", "DELETE", "/v1/health", E.NOT_FOUND, 405),
    # --- relayed from coreapp ---
    Case("send-not-ready", "POST", "/v1/messages", E.NOT_READY, json={"to": "12025550199", "type": "text",
         "text": {"body": "x"}}, core_error=("messages.send", E.NOT_READY)),
    Case("send-invalid-user", "POST", "/v1/messages", E.INVALID_USER, json={"to": "12025550199", "type": "text",
         "text": {"body": "x"}}, core_error=("messages.send", E.INVALID_USER)),
    Case("send-to-self", "POST", "/v1/messages", E.BAD_USER, json={"to": "12025550199", "type": "text",
         "text": {"body": "x"}}, core_error=("messages.send", E.BAD_USER)),
    Case("send-overloaded", "POST", "/v1/messages", E.OVERLOADED, json={"to": "12025550199", "type": "text",
         "text": {"body": "x"}}, core_error=("messages.send", E.OVERLOADED)),
    Case("verify-wrong-code", "POST", "/v1/account/verify", E.ACCESS_DENIED, json={"code": "000000"}),
    Case("stats-core-down", "GET", "/v1/stats/app", E.NOT_READY, core_error=("stats.app", E.NOT_READY)),
    Case("gc-core-down", "PUT", "/v1/services/message/gc", E.NOT_READY, core_error=("messages.gc", E.NOT_READY)),
]  # fmt: skip


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return DbSettings(engine=DbEngine.SQLITE, sqlite_path=tmp_path / "web.db")


@pytest.fixture
async def user_token(admin: Api) -> str:
    status, body, _ = await admin.call("POST", "/v1/users", {"username": USER, "password": USER_PASSWORD})
    assert status == 201, body
    status, body, _ = await admin.login(USER, USER_PASSWORD)
    assert status == 200, body
    return str(body["users"][0]["token"])


def check_error(status: int, body: Any, code: ErrorCode, expected_status: int | None) -> None:
    assert isinstance(body, dict) and body.get("errors"), (status, body)
    first = body["errors"][0]
    assert first["code"] == code.code, (status, body)
    assert first["title"] == code.title
    assert set(body["meta"]) == {"api_status", "version"}
    want = expected_status if expected_status is not None else code.http_status
    assert status == want, (status, body)
    if want != code.http_status:
        assert (code, want) in STATUS_OVERRIDES, f"undocumented status {want} for {code.code}"
    for error in body["errors"]:
        assert ErrorCode.from_code(error["code"]).title == error["title"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_error_table(admin: Api, user_token: str, core: FakeCore, case: Case) -> None:
    if case.core_error is not None:
        method, code = case.core_error
        core.errors[method] = ApiError(code, "injected")
    token = {"admin": admin.token, "user": user_token, "none": "", "bogus": "not.a.jwt"}[case.as_user]
    headers = dict(case.headers)
    if case.as_user == "none" or "Authorization" in headers:
        token = ""
    status, body, _ = await admin.call(case.method, case.path, case.json, data=case.data, token=token, headers=headers)
    check_error(status, body, case.code, case.status)


LoginCall = Callable[[Api], Awaitable[tuple[int, Any, Any]]]
LOGIN_CASES: list[tuple[str, LoginCall, ErrorCode, int | None]] = [
    ("first-login-needs-new-password", lambda api: api.login(password="secret"), E.PASSWORD_CHANGE_REQUIRED, None),
    ("wrong-password", lambda api: api.login(password="wrong"), E.ACCESS_DENIED, 401),
    ("unknown-user", lambda api: api.login("ghost", "whatever"), E.ACCESS_DENIED, 401),
    ("weak-new-password", lambda api: api.login(password="secret", new_password="weak"), E.INVALID_PARAMETER, None),
    ("login-extra-key", lambda api: api.call("POST", "/v1/users/login", {"x": 1}, basic=("admin", "secret"), token=""),
     E.UNEXPECTED_PARAMETER, None),
    ("login-malformed-json", lambda api: api.call("POST", "/v1/users/login", data="{", basic=("admin", "secret"),
     token=""), E.INVALID_REQUEST, None),
    ("login-without-credentials", lambda api: api.call("POST", "/v1/users/login", token=""), E.ACCESS_DENIED, 401),
]  # fmt: skip


@pytest.mark.parametrize(("name", "call", "code", "status"), LOGIN_CASES, ids=[c[0] for c in LOGIN_CASES])
async def test_login_error_table(api: Api, name: str, call: LoginCall, code: ErrorCode, status: int | None) -> None:
    got_status, body, _ = await call(api)
    check_error(got_status, body, code, status)


async def test_password_change_keeps_working_after_table(admin: Api) -> None:
    """The admin fixture's password is the one the table logs in with (guards the fixtures above)."""
    status, _, _ = await admin.login(password=ADMIN_PASSWORD)
    assert status == 200


# --- one table ----------------------------------------------------------------------------------------------

SOURCE_ROOTS = ("shared", "webapp", "coreapp", "chatd", "openprem")
TABLE_MODULE = Path("shared/errors.py")
ROOT = Path(__file__).resolve().parents[2]


def test_no_module_but_the_table_spells_an_error_title() -> None:
    """Titles live in ``ErrorCode`` only; code elsewhere names members (``ErrorCode.X.title``)."""
    titles = {member.title for member in ErrorCode}
    offenders = []
    for root in SOURCE_ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel == TABLE_MODULE or "migrations" in rel.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in titles:
                    offenders.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not offenders, "error titles outside shared/errors.py:\n" + "\n".join(offenders)


def test_codes_are_unique_and_statuses_are_http() -> None:
    codes = [member.code for member in ErrorCode]
    assert len(codes) == len(set(codes))
    for member in ErrorCode:
        assert 400 <= member.http_status <= 599, member
