"""Settings as earlier On-Prem clients send them, through HTTPS against a real CoreApp on every backend: legacy
application keys, the business compliance info, the profile photo as a form upload, the internal stats."""

from __future__ import annotations

import copy
import logging
from typing import Any

import aiohttp
import pytest

from tests.webapp.conftest import Api
from tests.webapp.test_settings_extra import JPEG, PNG, webapp  # noqa: F401  (the WebApp + real CoreApp fixture)

APP = "/v1/settings/application"
COMPLIANCE = "/v1/settings/business/compliance_info"
PHOTO = "/v1/settings/profile/photo"


def _code(body: Any) -> int:
    return int(body["errors"][0]["code"])


# --- legacy application settings keys --------------------------------------------------------------------------


async def test_legacy_key_with_a_current_name_is_applied(admin: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "openprem.webapp.settings")
    status, body, _ = await admin.call("PATCH", APP, {"db_garbage_collector": False})
    assert status == 200, body
    application = body["settings"]["application"]
    assert application["db_garbagecollector_enable"] is False
    assert "db_garbage_collector" not in application
    warnings = [r.getMessage() for r in caplog.records if "db_garbage_collector" in r.getMessage()]
    assert warnings == [
        "application setting 'db_garbage_collector' is a legacy On-Prem name: applied as "
        + "'db_garbagecollector_enable'"
    ]
    # its value is checked like the current key's
    status, body, _ = await admin.call("PATCH", APP, {"db_garbage_collector": "no"})
    assert (status, _code(body)) == (400, 1009)
    # the current name sent beside it wins
    status, body, _ = await admin.call(
        "PATCH", APP, {"db_garbage_collector": False, "db_garbagecollector_enable": True}
    )
    assert body["settings"]["application"]["db_garbagecollector_enable"] is True


@pytest.mark.parametrize(
    "patch",
    [
        {"tcp_listen_address": "0.0.0.0:6250"},
        {"webcallbacks": {"0": "https://hooks.example.com"}},
        {"messaging_api_rate_limit": [100, 1]},
        {"allow_nonexistent_users": True, "callback_persist": False, "pass_through": True},
    ],
)
async def test_legacy_keys_without_meaning_are_ignored_with_a_warning(
    admin: Api, caplog: pytest.LogCaptureFixture, patch: dict[str, Any]
) -> None:
    caplog.set_level(logging.WARNING, "openprem.webapp.settings")
    _, before, _ = await admin.call("GET", APP)
    status, body, _ = await admin.call("PATCH", APP, patch)
    assert status == 200, body
    application = body["settings"]["application"]
    legacy = [key for key in patch if key not in application]
    assert legacy and all(key not in application for key in legacy)
    for key in legacy:
        lines = [r for r in caplog.records if repr(key) in r.getMessage()]
        assert len(lines) == 1 and "ignored" in lines[0].getMessage()
    expected = {**before["settings"]["application"], **{k: v for k, v in patch.items() if k not in legacy}}
    assert application == expected


async def test_unknown_keys_that_are_not_legacy_stay_refused(admin: Api) -> None:
    for patch in ({"no_such_key": True}, {"tcp_listen_addres": "x"}, {"webhooks": {"tcp_listen_address": "x"}}):
        status, body, _ = await admin.call("PATCH", APP, patch)
        assert (status, _code(body)) == (400, 1010), patch


# --- business compliance info ----------------------------------------------------------------------------------

CONTACT = {"email": "care@example.com", "landline_number": "+918012345678", "mobile_number": "+919812345678"}
INFO: dict[str, Any] = {
    "entity_name": "Acme Traders LLP",
    "entity_type": "LIMITED_LIABILITY_PARTNERSHIP",
    "grievance_officer_details": {
        "name": "Asha Rao",
        "email": "grievance@example.com",
        "mobile_number": "+919876543210",
    },
    "customer_care_details": CONTACT,
}


def _with(path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(INFO)
    node: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    if value is ...:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return out


async def test_compliance_info_round_trip(admin: Api) -> None:
    status, body, _ = await admin.call("GET", COMPLIANCE)
    assert (status, _code(body)) == (404, 1006)
    status, body, _ = await admin.call("POST", COMPLIANCE, INFO)
    assert status == 200, body
    status, body, _ = await admin.call("GET", COMPLIANCE)
    assert status == 200, body
    stored = body["settings"]["business"]["compliance_info"]
    assert stored == {**INFO, "entity_type_custom": "", "is_registered": True}
    # a POST replaces the whole document; the spaced spelling is stored canonically
    other = {**_with("entity_type", "OTHER"), "entity_type_custom": "Trust", "is_registered": False}
    other["customer_care_details"] = {"email": "help@example.com", "landline_number": "+914412345678"}
    assert (await admin.call("POST", COMPLIANCE, other))[0] == 200
    stored = (await admin.call("GET", COMPLIANCE))[1]["settings"]["business"]["compliance_info"]
    assert stored == other
    assert (await admin.call("POST", COMPLIANCE, _with("entity_type", "SOLE PROPRIETORSHIP")))[0] == 200
    stored = (await admin.call("GET", COMPLIANCE))[1]["settings"]["business"]["compliance_info"]
    assert stored["entity_type"] == "SOLE_PROPRIETORSHIP"


INVALID_INFO: dict[str, tuple[dict[str, Any], int]] = {
    "entity_name missing": (_with("entity_name", ...), 1008),
    "entity_name empty": (_with("entity_name", ""), 1009),
    "entity_name a number": (_with("entity_name", 5), 1009),
    "entity_type unknown": (_with("entity_type", "TRUST"), 1009),
    "OTHER without entity_type_custom": ({**_with("entity_type", "OTHER"), "is_registered": True}, 1008),
    "entity_type_custom without OTHER": ({**INFO, "entity_type_custom": "Trust"}, 1009),
    "PARTNERSHIP without is_registered": (_with("entity_type", "PARTNERSHIP"), 1008),
    "is_registered a string": ({**INFO, "is_registered": "true"}, 1009),
    "grievance officer missing": (_with("grievance_officer_details", ...), 1008),
    "grievance officer name missing": (_with("grievance_officer_details.name", ...), 1008),
    "grievance officer bad email": (_with("grievance_officer_details.email", "nobody"), 1009),
    "grievance officer no number": (_with("grievance_officer_details.mobile_number", ...), 1008),
    "customer care missing": (_with("customer_care_details", ...), 1008),
    "customer care email missing": (_with("customer_care_details.email", ...), 1008),
    "customer care number without +": (_with("customer_care_details.mobile_number", "919812345678"), 1009),
    "customer care number with letters": (_with("customer_care_details.landline_number", "+91-CALL-NOW"), 1009),
    "stray key": ({**INFO, "gstin": "X"}, 1010),
    "stray contact key": (_with("customer_care_details.fax", "+911"), 1010),
}


@pytest.mark.parametrize(("body", "code"), list(INVALID_INFO.values()), ids=list(INVALID_INFO))
async def test_compliance_info_rejected(admin: Api, body: dict[str, Any], code: int) -> None:
    status, answer, _ = await admin.call("POST", COMPLIANCE, body)
    assert (status, _code(answer)) == (400, code), answer
    assert (await admin.call("GET", COMPLIANCE))[0] == 404  # nothing stored


async def test_compliance_info_is_admin_only(admin: Api) -> None:
    password = "Us3r-Pass!"
    await admin.call("POST", "/v1/users", {"username": "clerk", "password": password})
    _, body, _ = await admin.call("POST", "/v1/users/login", basic=("clerk", password), token="")
    clerk = body["users"][0]["token"]
    for method, payload in (("GET", None), ("POST", INFO)):
        status, body, _ = await admin.call(method, COMPLIANCE, payload, token=clerk)
        assert (status, _code(body)) == (403, 1005)
    for path in ("/v1/stats/app/internal", "/v1/stats/db/internal"):
        status, body, _ = await admin.call("GET", path, token=clerk)
        assert (status, _code(body)) == (403, 1005)


# --- profile photo as a form upload ----------------------------------------------------------------------------


def _form(*parts: tuple[str, bytes, str | None, str | None]) -> aiohttp.FormData:
    """``(field name, bytes, filename, content type)`` per part."""
    form = aiohttp.FormData(default_to_multipart=True)
    for name, data, filename, content_type in parts:
        if filename is None:  # a plain form field (bytes would become a file part named like the field)
            form.add_field(name, data.decode())
        else:
            form.add_field(name, data, filename=filename, content_type=content_type)
    return form


async def _post_form(admin: Api, form: aiohttp.FormData) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {admin.token}"}
    async with admin.session.post(admin.base + PHOTO, data=form, headers=headers) as resp:
        return resp.status, await resp.json()


async def _photo(admin: Api) -> tuple[str, bytes]:
    async with admin.session.get(admin.base + PHOTO, headers={"Authorization": f"Bearer {admin.token}"}) as resp:
        return resp.content_type, await resp.read()


async def test_photo_as_multipart(admin: Api) -> None:
    status, body = await _post_form(
        admin, _form(("note", b"hello", None, None), ("file", JPEG, "me.jpg", "image/jpeg"))
    )
    assert status == 200, body
    assert await _photo(admin) == ("image/jpeg", JPEG)
    # any field name; the type from the magic bytes when the part says only application/octet-stream
    status, body = await _post_form(admin, _form(("image", PNG, "me.png", "application/octet-stream")))
    assert status == 200, body
    assert await _photo(admin) == ("image/png", PNG)


@pytest.mark.parametrize(
    ("parts", "code"),
    [
        ([("file", JPEG, "me.jpg", "text/plain")], 1009),  # not an image type
        ([("file", PNG, "me.png", "image/jpeg")], 1009),  # the bytes are not of the declared type
        ([("file", b"GIF89a....", "me.gif", "application/octet-stream")], 1009),
        ([("file", b"", "me.jpg", "image/jpeg")], 1008),
        ([("file", b"\x89PNG\r\n\x1a\n" + bytes(5 * 1024 * 1024), "big.png", "image/png")], 1009),
        ([("note", b"no file here", None, None)], 1008),
        ([("note", b"x" * (65 * 1024), None, None), ("file", JPEG, "me.jpg", "image/jpeg")], 1009),
    ],
)
async def test_photo_multipart_rejected(
    admin: Api, parts: list[tuple[str, bytes, str | None, str | None]], code: int
) -> None:
    status, body = await _post_form(admin, _form(*parts))
    assert (status, _code(body)) == (400, code), body
    assert (await admin.call("GET", PHOTO))[0] == 404


async def test_photo_malformed_multipart(admin: Api) -> None:
    for headers, data in (
        ({"Content-Type": "multipart/form-data"}, b"--x\r\n"),  # no boundary
        ({"Content-Type": "multipart/form-data; boundary=abc"}, b"not a multipart body"),
        (
            {"Content-Type": "multipart/form-data; boundary=abc"},
            b"--abc\r\nbroken header line\r\n\r\nxx\r\n--abc--\r\n",
        ),
    ):
        status, body, _ = await admin.call("POST", PHOTO, data=data, headers=headers)
        assert (status, _code(body)) == (400, 1025), body


# --- internal stats ----------------------------------------------------------------------------------------------


async def test_internal_stats_are_the_stats(admin: Api) -> None:
    for section in ("app", "db"):
        status, body, _ = await admin.call("GET", f"/v1/stats/{section}/internal")
        assert status == 200, body
        _, public, _ = await admin.call("GET", f"/v1/stats/{section}")
        assert set(body["stats"]) == {section}
        assert set(body["stats"][section]) == set(public["stats"][section])
        async with admin.session.get(
            admin.base + f"/v1/stats/{section}/internal?format=prometheus",
            headers={"Authorization": f"Bearer {admin.token}"},
        ) as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
