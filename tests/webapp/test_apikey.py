"""``Authorization: Apikey <key>`` (reference §2.0): only ``GET /v1/health``, ``/v1/stats/app``, ``/v1/stats/db`` and
``/metrics``, with the key of ``WA_WEB_API_KEY``; bearer tokens keep working there, and every other route refuses
the header exactly as it refuses any non-bearer credentials.  On every database backend."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from shared.bus.local import LocalBus
from shared.config import API_KEY_MIN_LENGTH, ConfigError, DbSettings, load_settings
from shared.errors import ErrorCode
from tests.webapp.conftest import VERSION, Api, FakeCore, make_settings
from webapp.app import build_app
from webapp.auth import API_KEY_ROUTES, Authenticator
from webapp.metrics import WebMetrics
from webapp.openapi import build_openapi

KEY = "k3y-for-prometheus-scrapers-0123456789abcdef-XYZ"
"""The configured key (distinctive, so a search of the logs cannot miss it)."""
KEY_SHA256 = hashlib.sha256(KEY.encode()).digest()
APIKEY = {"Authorization": f"Apikey {KEY}"}
META = {"api_status": "stable", "version": VERSION}
PROMETHEUS_TEXT = "# HELP messages_sent_total Messages sent\n# TYPE messages_sent_total counter\n"

MONITORING = [
    ("/v1/health", "json"),
    ("/v1/stats/app", "json"),
    ("/v1/stats/app?format=prometheus", "prometheus"),
    ("/v1/stats/db", "json"),
    ("/v1/stats/db?format=prometheus", "prometheus"),
    ("/metrics", "json"),
    ("/metrics?format=prometheus", "prometheus"),
]
ELSEWHERE: list[tuple[str, str, Any]] = [
    ("GET", "/v1/settings/application", None),
    ("POST", "/v1/messages", {"to": "12025550199", "type": "text", "text": {"body": "hi"}}),
    ("GET", "/v1/support", None),
    ("PUT", "/v1/services/message/gc", None),
    ("GET", "/v1/users/admin", None),
    ("POST", "/v1/users/logout", None),
    ("GET", "/v1/stats", None),  # no such route: still 401, never 404
    ("DELETE", "/v1/health", None),  # a monitoring path, but not GET
    ("POST", "/metrics", None),
]


class StatsCore(FakeCore):
    """``FakeCore`` that also answers ``stats.app`` / ``stats.db`` (contracts §3)."""

    async def handle(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        if method in ("stats.app", "stats.db"):
            self.calls.append((method, payload))
            if payload["format"] == "prometheus":
                return {"text": PROMETHEUS_TEXT}
            return {"metrics": {"messages_sent_total": {"type": "counter", "help": "Messages sent", "data": []}}}
        return await super().handle(method, payload)


@pytest.fixture
def core() -> FakeCore:
    return StatsCore()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record from the webapp's start on, DEBUG included."""
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def web_options(all_logs: pytest.LogCaptureFixture) -> dict[str, Any]:
    return {"api_key": KEY}


def _code(body: Any) -> int:
    return int(body["errors"][0]["code"])


async def _refused_as_non_bearer(api: Api, method: str, path: str, json: Any, headers: dict[str, str]) -> None:
    """``headers`` get exactly the answer of Basic credentials on a bearer route (status, envelope, challenge)."""
    status, body, got = await api.call(method, path, json, token="", headers=headers)
    ref_status, ref_body, ref_headers = await api.call(
        method, path, json, token="", headers={"Authorization": "Basic eDp5"}
    )
    assert status == ref_status == 401, (method, path, status, body)
    assert body == ref_body, (method, path)
    assert _code(body) == ErrorCode.ACCESS_DENIED.code and body["meta"] == META
    assert got["WWW-Authenticate"] == ref_headers["WWW-Authenticate"] == 'Bearer realm="WhatsApp"'


# --- over HTTPS, every backend -------------------------------------------------------------------------------


async def test_the_key_opens_the_monitoring_routes(api: Api, core: FakeCore) -> None:
    await _monitor_with_the_key(api, core)


async def _monitor_with_the_key(api: Api, core: FakeCore) -> None:
    for path, fmt in MONITORING:
        status, body, headers = await api.call("GET", path, headers=APIKEY)
        assert status == 200, (path, body)
        if fmt == "prometheus":
            assert headers["Content-Type"].startswith("text/plain"), path
            assert isinstance(body, str) and body, path
        else:
            assert body["meta"] == META, path
    status, body, _ = await api.call("GET", "/v1/health", headers=APIKEY)
    assert body["health"] == {"gateway_status": "connected"}
    status, body, _ = await api.call("GET", "/v1/stats/db", headers=APIKEY)
    assert set(body["stats"]["db"]) == {"messages_sent_total"}
    status, text, _ = await api.call("GET", "/v1/stats/app?format=prometheus", headers=APIKEY)
    assert text == PROMETHEUS_TEXT
    assert ("stats.app", {"format": "prometheus"}) in core.calls
    # The scheme is case-insensitive (RFC 9110), HEAD comes with GET, and surrounding blanks do not matter.
    for header in (f"apikey {KEY}", f"APIKEY {KEY}", f"  Apikey   {KEY}  "):
        status, _, _ = await api.call("GET", "/metrics", headers={"Authorization": header})
        assert status == 200, header
    async with api.session.head(api.base + "/v1/health", headers=APIKEY) as resp:
        assert resp.status == 200


async def test_a_wrong_key_is_401(api: Api) -> None:
    await _monitor_with_wrong_keys(api)


async def _monitor_with_wrong_keys(api: Api) -> None:
    wrong = [
        KEY[:-1],
        KEY + "x",
        KEY.upper(),
        "",
        "x" * len(KEY),
        f"{KEY} {KEY}",
        KEY[:-1] + "é",  # not ASCII: refused, not a 500
    ]
    for key in wrong:
        for path in ("/v1/health", "/v1/stats/app", "/v1/stats/db?format=prometheus", "/metrics"):
            status, body, headers = await api.call("GET", path, token="", headers={"Authorization": f"Apikey {key}"})
            assert (status, _code(body)) == (401, 1005), (path, key)
            assert body["meta"] == META and headers["WWW-Authenticate"] == 'Bearer realm="WhatsApp"'
            assert KEY not in str(body)
    # The key is not a bearer token, nor the bare header value.
    for header in (f"Bearer {KEY}", KEY, f"Apikey:{KEY}", f"Token {KEY}"):
        status, body, _ = await api.call("GET", "/v1/health", token="", headers={"Authorization": header})
        assert (status, _code(body)) == (401, 1005), header


async def test_the_key_is_refused_on_every_other_route(api: Api, core: FakeCore) -> None:
    for method, path, json in ELSEWHERE:
        await _refused_as_non_bearer(api, method, path, json, APIKEY)
    assert core.calls == []  # nothing reached coreapp
    # Logging out with the key revoked nothing: the admin still logs in and its token still works.
    status, body, _ = await api.login(password="secret", new_password="N3w-Secret!")
    assert status == 200
    status, _, _ = await api.call("GET", "/v1/health", token=body["users"][0]["token"])
    assert status == 200


async def test_bearer_tokens_still_work_there(admin: Api) -> None:
    for path, _fmt in MONITORING:
        status, body, _ = await admin.call("GET", path)
        assert status == 200, (path, body)
    status, body, _ = await admin.call("GET", "/v1/settings/application")
    assert status == 200
    # A bad bearer token is not rescued by the key being configured.
    status, body, _ = await admin.call("GET", "/v1/health", token="not.a.jwt")
    assert (status, _code(body)) == (401, 1005)
    status, body, _ = await admin.call("GET", "/metrics", token="")
    assert (status, _code(body)) == (401, 1005)


@pytest.mark.parametrize("web_options", [{}], ids=["no-key"])
async def test_no_key_configured_refuses_every_apikey(admin: Api) -> None:
    for header in (f"Apikey {KEY}", "Apikey ", "Apikey"):
        for path, _fmt in MONITORING:
            status, body, headers = await admin.call("GET", path, token="", headers={"Authorization": header})
            assert (status, _code(body)) == (401, 1005), (path, header)
            assert body["meta"] == META and headers["WWW-Authenticate"] == 'Bearer realm="WhatsApp"'
    status, _, _ = await admin.call("GET", "/v1/health")
    assert status == 200  # bearer as ever


async def test_the_key_never_reaches_the_logs(api: Api, core: FakeCore, all_logs: pytest.LogCaptureFixture) -> None:
    await _monitor_with_the_key(api, core)
    await _monitor_with_wrong_keys(api)
    for method, path, json in ELSEWHERE[:3]:
        await api.call(method, path, json, token="", headers=APIKEY)
    records = all_logs.get_records("setup") + all_logs.get_records("call")
    messages = [record.getMessage() for record in records]
    assert any("WA_WEB_API_KEY is set" in message for message in messages), "the start-up logs were not captured"
    assert any("/v1/health" in message and " 200 " in message for message in messages), "no access log captured"
    digest_hex = KEY_SHA256.hex()
    for record, message in zip(records, messages, strict=True):
        text = f"{message} {record.args!r} {record.__dict__!r}"
        assert KEY not in text and KEY[:16] not in text and digest_hex not in text, (record.name, message)


# --- configuration and the document (no server) ----------------------------------------------------------------


def test_only_the_digest_is_kept() -> None:
    settings = load_settings(env={"WA_WEB_API_KEY": KEY})
    assert settings.web.api_key_sha256 == KEY_SHA256
    for shown in (repr(settings), str(settings), repr(settings.web)):
        assert KEY not in shown and "api_key" not in shown and KEY_SHA256.hex() not in shown
    assert KEY not in repr(settings.model_dump())
    assert load_settings(env={}).web.api_key_sha256 is None
    assert load_settings(env={"WA_WEB_API_KEY": ""}).web.api_key_sha256 is None


@pytest.mark.parametrize(
    "weak",
    [
        "x" * (API_KEY_MIN_LENGTH - 1),
        "short-secret",
        "has a space but is long enough to pass the length rule",
        "non-ascii-é-" + "x" * API_KEY_MIN_LENGTH,
    ],
    ids=["31-chars", "short", "space", "non-ascii"],
)
def test_a_weak_key_fails_at_start_in_one_line(weak: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"WA_WEB_API_KEY": weak, "WA_WEB_PORT": "0"})
    message = str(info.value)
    assert message.startswith("invalid configuration: ") and "\n" not in message
    assert "WA_WEB_API_KEY: " in message and f"at least {API_KEY_MIN_LENGTH}" in message
    assert "WA_WEB_PORT" in message  # every bad variable in the one message
    assert weak not in message and weak[:8] not in message


def test_the_openapi_document_offers_the_key_on_those_routes_only(tmp_path: Path) -> None:
    app = build_app(make_settings(DbSettings(), tmp_path), LocalBus(), cast(Authenticator, None), WebMetrics())
    document = build_openapi(app, VERSION)
    scheme = document["components"]["securitySchemes"]["apiKeyAuth"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert "Apikey" in scheme["description"]
    offered = {
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if any("apiKeyAuth" in requirement for requirement in operation.get("security", []))
    }
    assert offered == {("get", path) for path in API_KEY_ROUTES}
    for path in API_KEY_ROUTES:
        assert document["paths"][path]["get"]["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
        assert "401" in document["paths"][path]["get"]["responses"]
    assert document["security"] == [{"bearerAuth": []}]
