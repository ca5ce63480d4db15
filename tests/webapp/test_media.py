"""``/v1/media`` against a real WebApp: upload per type family, limits, type checks, get and delete.

Media never touches the database, so SQLite is enough here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import DbSettings
from tests.support import media_samples as samples
from tests.support.services import db_settings_for
from tests.webapp.conftest import Api

LIMIT = 64 * 1024


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


@pytest.fixture
def web_options() -> dict[str, Any]:
    return {"max_upload_bytes": LIMIT}


def _media_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "media"


def _files(tmp_path: Path) -> list[str]:
    root = _media_dir(tmp_path)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


async def _upload(api: Api, data: bytes, content_type: str) -> tuple[int, Any]:
    status, body, _ = await api.call("POST", "/v1/media", data=data, headers={"Content-Type": content_type})
    return status, body


@pytest.mark.parametrize(
    ("content_type", "data", "stored_type"),
    [
        ("image/png", samples.png(), "image/png"),
        ("image/jpeg", samples.jpeg(), "image/jpeg"),
        ("image/webp", samples.webp(), "image/webp"),
        ("application/pdf", samples.pdf(), "application/pdf"),
        ("audio/ogg; codecs=opus", samples.ogg_opus(), "audio/ogg; codecs=opus"),
        ("audio/ogg", samples.ogg_opus(), "audio/ogg; codecs=opus"),
        ("video/mp4", samples.mp4(), "video/mp4"),
        ("video/3gpp", samples.mp4(b"3gp5"), "video/3gpp"),
        ("audio/mp4", samples.mp4(b"M4A "), "audio/mp4"),
        ("text/plain; charset=utf-8", samples.text(), "text/plain"),
    ],
)
async def test_upload_get_delete(admin: Api, tmp_path: Path, content_type: str, data: bytes, stored_type: str):
    status, body = await _upload(admin, data, content_type)
    assert status == 201, body
    media_id = body["media"][0]["id"]
    assert set(_files(tmp_path)) == {media_id, media_id + ".json"}
    sidecar = json.loads((_media_dir(tmp_path) / f"{media_id}.json").read_text())
    assert sidecar["mime_type"] == stored_type
    assert sidecar["size"] == len(data)
    assert sidecar["sha256"] == hashlib.sha256(data).hexdigest()

    async with admin.session.get(
        f"{admin.base}/v1/media/{media_id}", headers={"Authorization": f"Bearer {admin.token}"}
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == stored_type
        assert await resp.read() == data

    status, body, _ = await admin.call("DELETE", f"/v1/media/{media_id}")
    assert status == 200 and "errors" not in body
    assert _files(tmp_path) == []
    status, body, _ = await admin.call("GET", f"/v1/media/{media_id}")
    assert (status, body["errors"][0]["code"]) == (404, 1006)


async def test_needs_auth(api: Api):
    status, body = await _upload(api, samples.png(), "image/png")
    assert (status, body["errors"][0]["code"]) == (401, 1005)


async def test_over_the_limit_leaves_nothing(admin: Api, tmp_path: Path):
    big = samples.png(extra=LIMIT)
    status, body = await _upload(admin, big, "image/png")
    assert status == 413
    assert body["errors"][0]["code"] == 1009 and str(LIMIT) in body["errors"][0]["details"]
    assert _files(tmp_path) == []

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    async with admin.session.post(
        f"{admin.base}/v1/media",
        data=chunked(),
        headers={"Authorization": f"Bearer {admin.token}", "Content-Type": "image/png"},
    ) as resp:
        assert resp.status == 413
        assert (await resp.json())["errors"][0]["code"] == 1009
    assert [name for name in _files(tmp_path) if not name.startswith(".")] == []
    assert _files(tmp_path) == []


@pytest.mark.parametrize("web_options", [{"max_upload_bytes": 8 * 1024 * 1024}])
async def test_streamed_upload_above_one_mib(admin: Api, tmp_path: Path):
    """Bigger than aiohttp's default client_max_size (1 MiB): the upload is streamed, not read whole."""
    data = samples.png(extra=3 * 1024 * 1024)
    status, body = await _upload(admin, data, "image/png")
    assert status == 201, body
    media_id = body["media"][0]["id"]
    assert (_media_dir(tmp_path) / media_id).read_bytes() == data


@pytest.mark.parametrize(
    ("content_type", "data", "status"),
    [
        ("image/png", samples.jpeg(), 400),  # bytes are another type
        ("image/jpeg", samples.pdf(), 400),
        ("audio/ogg", samples.ogg_vorbis(), 400),  # Ogg without Opus
        ("audio/ogg; codecs=vorbis", samples.ogg_vorbis(), 415),
        ("application/zip", b"PK\x03\x04rest", 415),  # not on the allow-list
        ("image/gif", b"GIF89a....", 415),
        ("text/plain", b"\x00\x01\x02binary", 400),
        ("image/png", b"", 400),  # empty body
    ],
)
async def test_type_checks(admin: Api, tmp_path: Path, content_type: str, data: bytes, status: int):
    got, body = await _upload(admin, data, content_type)
    assert got == status, body
    assert body["errors"][0]["code"] == 1009
    assert body["errors"][0]["details"]
    assert _files(tmp_path) == []


async def test_missing_content_type(admin: Api):
    async with admin.session.post(
        f"{admin.base}/v1/media",
        data=samples.png(),
        headers={"Authorization": f"Bearer {admin.token}"},
        skip_auto_headers=["Content-Type"],
    ) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["errors"][0]["code"] == 1008


@pytest.mark.parametrize(
    "media_id",
    [
        "f043afd0-f0ae-4b9c-ab3d-696fb4c8cd68",  # well-formed, unknown
        "F043AFD0-F0AE-4B9C-AB3D-696FB4C8CD68",
        "..%2F..%2Fetc%2Fpasswd",
        "not-a-uuid",
        "f043afd0-f0ae-4b9c-ab3d-696fb4c8cd68.json",
    ],
)
async def test_unknown_or_malformed_ids(admin: Api, media_id: str):
    for method in ("GET", "DELETE"):
        status, body, _ = await admin.call(method, f"/v1/media/{media_id}")
        assert (status, body["errors"][0]["code"]) == (404, 1006), (method, body)
