"""Settings beyond the basics, through HTTPS against a real CoreApp in-process (same LocalBus, same database):
application keys, media providers, profile, business profile, backup/restore, certificates."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from coreapp.app import CoreApp
from shared.appsettings import ApplicationSettings
from shared.bus.local import LocalBus
from shared.config import DbSettings
from tests.webapp.conftest import Api, fast_hasher, make_settings
from webapp.app import WebApp
from webapp.tls import ensure_certificate

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def webapp(app_db: DbSettings, tmp_path: Path) -> AsyncIterator[WebApp]:
    """WebApp + a real (unregistered) CoreApp on one LocalBus."""
    settings = make_settings(app_db, tmp_path / "data")
    bus = LocalBus(default_timeout_s=30.0)
    core = CoreApp(settings, bus)
    await core.start()
    app = WebApp(settings, bus, password_hasher=fast_hasher())
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
        await core.stop()


def _code(body: Any) -> int:
    return int(body["errors"][0]["code"])


# --- application settings: every key ------------------------------------------------------------------------

VALID: list[tuple[dict[str, Any], tuple[str, ...], Any]] = [
    ({"webhooks": {"url": "https://hooks.example.com/x"}}, ("webhooks", "url"), "https://hooks.example.com/x"),
    ({"webhooks": {"max_concurrent_requests": 24}}, ("webhooks", "max_concurrent_requests"), 24),
    # write-only: stored, and GET shows only that one is set
    ({"webhooks": {"secret": "0123456789abcdef-signing"}}, ("webhooks", "secret"), "****"),
    ({"webhooks": {"message": {"sent": True}}}, ("webhooks", "message", "sent"), True),
    ({"webhooks": {"message": {"delivered": False}}}, ("webhooks", "message", "delivered"), False),
    ({"webhooks": {"message": {"read": False}}}, ("webhooks", "message", "read"), False),
    ({"callback_backoff_delay_ms": "5000"}, ("callback_backoff_delay_ms",), 5000),
    ({"max_callback_backoff_delay_ms": 600000}, ("max_callback_backoff_delay_ms",), 600000),
    ({"callback_persist": False}, ("callback_persist",), False),
    ({"pass_through": True}, ("pass_through",), True),
    ({"sent_status": True}, ("sent_status",), True),
    ({"media": {"auto_download": ["image", "audio"]}}, ("media", "auto_download"), ["image", "audio"]),
    ({"heartbeat_interval": 10}, ("heartbeat_interval",), 10),
    ({"unhealthy_interval": 60}, ("unhealthy_interval",), 60),
    ({"on_call_pager": "12025550199"}, ("on_call_pager",), "12025550199"),
    ({"axolotl_context_striping_disabled": True}, ("axolotl_context_striping_disabled",), True),
    ({"notify_user_change_number": False}, ("notify_user_change_number",), False),
    ({"show_security_notifications": False}, ("show_security_notifications",), False),
    ({"db_garbagecollector_enable": False}, ("db_garbagecollector_enable",), False),
    ({"garbagecollector_enable": {"media": True}}, ("garbagecollector_enable", "media"), True),
    ({"garbagecollector_enable": {"messages": False}}, ("garbagecollector_enable", "messages"), False),
    ({"skip_referral_media_download": True}, ("skip_referral_media_download",), True),
    (
        {"webhook_payload_conversation_pricingmodel_disabled": True},
        ("webhook_payload_conversation_pricingmodel_disabled",),
        True,
    ),
    ({"verbose_logging": True}, ("verbose_logging",), True),
    ({"log_level": "debug"}, ("log_level",), "debug"),
]

INVALID: list[tuple[dict[str, Any], int]] = [
    ({"webhooks": {"url": "http://hooks.example.com"}}, 1009),
    ({"webhooks": {"url": 5}}, 1009),
    ({"webhooks": {"max_concurrent_requests": 7}}, 1009),
    ({"webhooks": {"max_concurrent_requests": "12"}}, 1009),
    ({"webhooks": {"secret": "too-short"}}, 1009),
    ({"webhooks": {"secret": "****"}}, 1009),  # the mask sent back must not replace the secret
    ({"webhooks": {"message": {"sent": "true"}}}, 1009),
    ({"webhooks": {"message": {"seen": True}}}, 1010),
    ({"callback_backoff_delay_ms": "soon"}, 1009),
    ({"callback_backoff_delay_ms": -1}, 1009),
    ({"callback_backoff_delay_ms": True}, 1009),
    ({"max_callback_backoff_delay_ms": "x"}, 1009),
    ({"callback_persist": "false"}, 1009),
    ({"callback_persist": 0}, 1009),
    ({"pass_through": 1}, 1009),
    ({"sent_status": "yes"}, 1009),
    ({"media": {"auto_download": ["gif"]}}, 1009),
    ({"media": {"auto_download": "image"}}, 1009),
    ({"heartbeat_interval": 0}, 1009),
    ({"heartbeat_interval": "5"}, 1009),
    ({"unhealthy_interval": 0}, 1009),
    ({"on_call_pager": 5}, 1009),
    ({"on_call_pager": "x" * 65}, 1009),
    ({"axolotl_context_striping_disabled": "no"}, 1009),
    ({"notify_user_change_number": None}, 1009),
    ({"show_security_notifications": "false"}, 1009),
    ({"db_garbagecollector_enable": 1}, 1009),
    ({"garbagecollector_enable": {"media": "yes"}}, 1009),
    ({"garbagecollector_enable": {"logs": True}}, 1010),
    ({"skip_referral_media_download": "true"}, 1009),
    ({"webhook_payload_conversation_pricingmodel_disabled": 2}, 1009),
    ({"verbose_logging": "on"}, 1009),
    ({"log_level": "trace"}, 1009),
    ({"wa_id": "12025550199"}, 1010),
    ({"no_such_key": True}, 1010),
]


def _leaves(model: type[Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out |= _leaves(sub, (*prefix, name))
        else:
            out.add((*prefix, name))
    return out


def test_every_key_is_covered() -> None:
    assert {path for _, path, _ in VALID} == _leaves(ApplicationSettings)


def _at(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


async def test_application_keys_round_trip_and_reset(admin: Api) -> None:
    for patch, path, expected in VALID:
        status, body, _ = await admin.call("PATCH", "/v1/settings/application", patch)
        assert status == 200, (patch, body)
        status, body, _ = await admin.call("GET", "/v1/settings/application")
        assert _at(body["settings"]["application"], path) == expected, patch
    assert "wa_id" not in body["settings"]["application"]  # not registered
    status, body, _ = await admin.call("DELETE", "/v1/settings/application")
    assert status == 200
    assert body["settings"]["application"] == ApplicationSettings().model_dump(mode="json")


async def test_application_invalid_values(admin: Api) -> None:
    for patch, code in INVALID:
        status, body, _ = await admin.call("PATCH", "/v1/settings/application", patch)
        assert (status, _code(body)) == (400, code), (patch, body)
    status, body, _ = await admin.call("GET", "/v1/settings/application")
    assert body["settings"]["application"] == ApplicationSettings().model_dump(mode="json")


# --- media providers ----------------------------------------------------------------------------------------

PROVIDERS = "/v1/settings/application/media/providers"


async def test_media_providers(admin: Api, webapp: WebApp) -> None:
    status, body, _ = await admin.call("GET", PROVIDERS)
    assert status == 200 and body["settings"]["application"]["media"]["providers"] == []
    bearer = {"name": "cdn", "type": "www", "config": {"bearer": "tok-1"}}
    basic = {"name": "files", "type": "www", "config": {"basic": {"username": "u", "password": "p@ss"}}}
    status, body, _ = await admin.call("POST", PROVIDERS, [bearer, basic])
    assert status == 200, body
    status, body, _ = await admin.call("POST", PROVIDERS, [{**bearer, "config": {"bearer": "tok-2"}}])
    assert status == 200, body
    status, body, _ = await admin.call("GET", PROVIDERS)
    assert body["settings"]["application"]["media"]["providers"] == [
        {"name": "cdn", "type": "www", "config": {"bearer": "****"}},
        {"name": "files", "type": "www", "config": {"basic": {"username": "u", "password": "****"}}},
    ]
    status, body, _ = await admin.call("DELETE", PROVIDERS + "/cdn")
    assert status == 200, body
    status, body, _ = await admin.call("DELETE", PROVIDERS + "/cdn")
    assert (status, _code(body)) == (404, 1006)
    status, body, _ = await admin.call("GET", PROVIDERS)
    assert [p["name"] for p in body["settings"]["application"]["media"]["providers"]] == ["files"]


PROVIDERS_REJECTED: list[tuple[Any, int]] = [
    ({"name": "x"}, 1025),
    ([], 1008),
    ([{"type": "www", "config": {"bearer": "t"}}], 1008),
    ([{"name": "x", "type": "ftp", "config": {"bearer": "t"}}], 1009),
    ([{"name": "x", "config": {}}], 1009),
    ([{"name": "x", "config": {"bearer": "t", "basic": {"username": "u", "password": "p"}}}], 1009),
    ([{"name": "x", "config": {"bearer": "t"}, "extra": 1}], 1010),
    ([{"name": "x", "config": {"basic": {"username": "u"}}}], 1008),
]


async def test_media_providers_rejected(admin: Api) -> None:
    for body, code in PROVIDERS_REJECTED:
        status, got, _ = await admin.call("POST", PROVIDERS, body)
        assert (status, _code(got)) == (400, code), (body, got)
    status, got, _ = await admin.call("POST", PROVIDERS, data=b"[", headers={"Content-Type": "application/json"})
    assert (status, _code(got)) == (400, 1025)


# --- profile ------------------------------------------------------------------------------------------------


async def test_about(admin: Api) -> None:
    status, body, _ = await admin.call("GET", "/v1/settings/profile/about")
    assert status == 200 and body["settings"]["profile"]["about"] == {"text": ""}
    assert (await admin.call("PATCH", "/v1/settings/profile/about", {"text": "é" * 139}))[0] == 200
    status, body, _ = await admin.call("GET", "/v1/settings/profile/about")
    assert body["settings"]["profile"]["about"] == {"text": "é" * 139}
    for bad, code in (({"text": "x" * 140}, 1009), ({}, 1008), ({"text": 5}, 1009), ({"text": "", "x": 1}, 1010)):
        status, body, _ = await admin.call("PATCH", "/v1/settings/profile/about", bad)
        assert (status, _code(body)) == (400, code), bad


async def test_photo(admin: Api) -> None:
    path = "/v1/settings/profile/photo"
    status, body, _ = await admin.call("GET", path)
    assert (status, _code(body)) == (404, 1006)
    status, body, _ = await admin.call("POST", path, data=JPEG, headers={"Content-Type": "image/jpeg"})
    assert status == 200, body
    async with admin.session.get(admin.base + path, headers={"Authorization": f"Bearer {admin.token}"}) as resp:
        assert resp.status == 200 and resp.content_type == "image/jpeg" and await resp.read() == JPEG
    status, body, _ = await admin.call("GET", path + "?format=link")
    link = body["settings"]["profile"]["photo"]["link"]
    assert link == admin.base + path
    for data, ctype, code in (
        (JPEG, "text/plain", 1009),
        (PNG, "image/jpeg", 1009),
        (b"", "image/png", 1008),
        (b"\x89PNG\r\n\x1a\n" + bytes(5 * 1024 * 1024), "image/png", 1009),
    ):
        status, body, _ = await admin.call("POST", path, data=data, headers={"Content-Type": ctype})
        assert (status, _code(body)) == (400, code), ctype
    assert (await admin.call("POST", path, data=PNG, headers={"Content-Type": "image/png"}))[0] == 200
    async with admin.session.get(link, headers={"Authorization": f"Bearer {admin.token}"}) as resp:
        assert resp.content_type == "image/png" and await resp.read() == PNG
    assert (await admin.call("DELETE", path))[0] == 200
    assert (await admin.call("GET", path))[0] == 404


async def test_business_profile(admin: Api) -> None:
    path = "/v1/settings/business/profile"
    status, body, _ = await admin.call("GET", path)
    empty = {"address": "", "description": "", "email": "", "vertical": "", "websites": []}
    assert status == 200 and body["settings"]["business"]["profile"] == empty
    full = {
        "address": "a" * 256,
        "description": "Shoes",
        "email": "shop@example.com",
        "vertical": "v" * 128,
        "websites": ["https://example.com", "http://example.org/" + "p" * 200],
    }
    assert (await admin.call("POST", path, full))[0] == 200
    assert (await admin.call("POST", path, {"description": "Boots"}))[0] == 200
    status, body, _ = await admin.call("GET", path)
    assert body["settings"]["business"]["profile"] == {**full, "description": "Boots"}
    for bad, code in (
        ({"address": "a" * 257}, 1009),
        ({"description": "d" * 257}, 1009),
        ({"email": "e" * 120 + "@example.com"}, 1009),
        ({"email": "not-an-email"}, 1009),
        ({"vertical": "v" * 129}, 1009),
        ({"websites": ["https://a.example", "https://b.example", "https://c.example"]}, 1009),
        ({"websites": ["ftp://a.example"]}, 1009),
        ({"websites": ["https://a.example/" + "p" * 256]}, 1009),
        ({"websites": "https://a.example"}, 1009),
        ({"phone": "1"}, 1010),
    ):
        status, body, _ = await admin.call("POST", path, bad)
        assert (status, _code(body)) == (400, code), bad


# --- backup / restore (settings only: the registered round trip is tests/coreapp/test_backup.py) ---------------


async def test_backup_restore_settings(admin: Api) -> None:
    await admin.call("PATCH", "/v1/settings/application", {"sent_status": True})
    await admin.call("PATCH", "/v1/settings/profile/about", {"text": "before"})
    status, body, _ = await admin.call("POST", "/v1/settings/backup", {"password": "pw-1-long-enough"})
    assert status == 200, body
    blob = body["settings"]["data"]
    await admin.call("DELETE", "/v1/settings/application")
    await admin.call("PATCH", "/v1/settings/profile/about", {"text": "after"})
    for bad, status_code in (
        ({"password": "nope", "data": blob}, (400, 1009)),
        ({"password": "pw-1-long-enough", "data": blob[:20]}, (400, 1009)),
        ({"password": "pw-1-long-enough"}, (400, 1008)),
        ({"password": "", "data": blob}, (400, 1009)),
        ({"password": "pw-1-long-enough", "data": blob, "x": 1}, (400, 1010)),
    ):
        status, body, _ = await admin.call("POST", "/v1/settings/restore", bad)
        assert (status, _code(body)) == status_code, bad
    status, body, _ = await admin.call("POST", "/v1/settings/restore", data=b"{", headers={"Content-Type": "x"})
    assert (status, _code(body)) == (400, 1025)
    status, body, _ = await admin.call("POST", "/v1/settings/backup", {})
    assert (status, _code(body)) == (400, 1008)
    status, body, _ = await admin.call("POST", "/v1/settings/restore", {"password": "pw-1-long-enough", "data": blob})
    assert status == 200, body
    status, body, _ = await admin.call("GET", "/v1/settings/application")
    assert body["settings"]["application"]["sent_status"] is True
    status, body, _ = await admin.call("GET", "/v1/settings/profile/about")
    assert body["settings"]["profile"]["about"]["text"] == "before"


# --- certificates -------------------------------------------------------------------------------------------


async def _served_by(url: str, ca_pem: bytes) -> bool:
    """Whether a new connection that trusts only ``ca_pem`` completes its handshake."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        try:
            async with session.get(url + "/v1/health") as resp:
                return resp.status in (200, 401)
        except aiohttp.ClientConnectorCertificateError:
            return False


async def test_external_certificate_swapped_live(admin: Api, webapp: WebApp, tmp_path: Path) -> None:
    status, self_signed, _ = await admin.call("GET", "/v1/certificates/external/ca")
    web_dir = tmp_path / "data" / "web"
    assert status == 200 and self_signed == (web_dir / "server.crt").read_text()

    ca = trustme.CA(key_type=trustme.KeyType.RSA)  # another key type than the self-signed EC certificate
    leaf = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    other = trustme.CA().issue_cert("localhost")
    for body, code in (
        (b"", 1008),
        (b"garbage", 1009),
        (leaf.cert_chain_pems[0].bytes(), 1008),
        (leaf.cert_chain_pems[0].bytes() + other.private_key_pem.bytes(), 1009),
    ):
        status, got, _ = await admin.call("POST", "/v1/certificates/external", data=body)
        assert (status, _code(got)) == (400, code), body[:20]
    assert await _served_by(webapp.url, self_signed.encode())

    status, got, _ = await admin.call(
        "POST", "/v1/certificates/external", data=leaf.private_key_and_cert_chain_pem.bytes()
    )
    assert status == 200, got
    assert await _served_by(webapp.url, ca.cert_pem.bytes())
    assert not await _served_by(webapp.url, self_signed.encode())
    status, got, _ = await admin.call("GET", "/v1/certificates/external/ca")  # the pooled old connection still works
    assert (status, _code(got)) == (404, 1006)
    settings = make_settings(DbSettings(), tmp_path / "data")
    assert ensure_certificate(settings.web, settings.paths.data_dir)[0] == web_dir / "external.crt"  # next start


async def test_webhooks_ca_endpoints(admin: Api) -> None:
    path = "/v1/certificates/webhooks/ca"
    status, body, _ = await admin.call("GET", path)
    assert (status, _code(body)) == (404, 1006)
    for data, code in ((b"", 1008), (b"not pem", 1009), (b"\xff\xfe", 1009)):
        status, body, _ = await admin.call("POST", path, data=data)
        assert (status, _code(body)) == (400, code), data
    pem = trustme.CA().cert_pem.bytes()
    assert (await admin.call("POST", path, data=pem))[0] == 200
    status, body, headers = await admin.call("GET", path)
    assert status == 200 and body.strip() == pem.decode().strip() and headers["Content-Type"].startswith("text/plain")
    assert (await admin.call("DELETE", path))[0] == 200
    assert (await admin.call("GET", path))[0] == 404


async def test_admin_only(admin: Api) -> None:
    status, body, _ = await admin.call("POST", "/v1/users", {"username": "bob", "password": "B0b-Secret!"})
    assert status in (200, 201), body
    status, body, _ = await admin.login("bob", "B0b-Secret!")
    token = body["users"][0]["token"]
    for method, path in (
        ("GET", PROVIDERS),
        ("POST", "/v1/settings/backup"),
        ("GET", "/v1/settings/profile/about"),
        ("GET", "/v1/settings/business/profile"),
        ("GET", "/v1/certificates/webhooks/ca"),
        ("POST", "/v1/certificates/external"),
    ):
        status, body, _ = await admin.call(method, path, {}, token=token)
        assert (status, _code(body)) == (403, 1005), path
