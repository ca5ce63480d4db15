"""Requests aiohttp's parser rejects before any route (issue 12 point 10): each gets the On-Prem envelope with
the right status, one WARNING line, no traceback and none of the offending bytes (which may be a token)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.config import DbSettings
from tests.support.services import db_settings_for
from tests.webapp.conftest import VERSION, Api, FakeCore
from webapp.app import WebApp
from webapp.protocol import MAX_HEADER_BYTES, MAX_URL_BYTES

SECRET = b"s3cr3t-token-" + b"z" * (MAX_HEADER_BYTES + 10)
HEAD = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n"

CASES: dict[str, tuple[bytes, int]] = {
    "oversized header": (HEAD + b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n", 431),
    "oversized token": (HEAD + b"Authorization: Bearer " + SECRET + b"\r\n\r\n", 431),
    "too many headers": (HEAD + b"".join(b"X-H%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431),
    "NUL in a header value": (HEAD + b"X-A: a\x00b\r\n\r\n", 400),
    "NUL in a header name": (HEAD + b"X-\x00A: b\r\n\r\n", 400),
    "invalid request line": (b"GARBAGE\r\n\r\n", 400),
    "not HTTP": (b"GET /v1/health FOO/1.1\r\nHost: localhost\r\n\r\n", 400),
    "over-long URL": (b"GET /" + b"u" * (MAX_URL_BYTES + 10) + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),
    "Content-Length and chunked": (
        b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "bad Content-Length": (b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1x\r\n\r\n", 400),
}


@pytest.fixture
def app_db(tmp_path: Path) -> DbSettings:
    return db_settings_for("sqlite", tmp_path)


class Raw:
    """A TLS socket to the real WebApp: send bytes, read one HTTP/1.x response."""

    def __init__(self, webapp: WebApp, tmp_path: Path) -> None:
        self.port = int(webapp.url.rsplit(":", 1)[1])
        self.ctx = ssl.create_default_context(cafile=str(tmp_path / "data" / "web" / "server.crt"))

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, ssl=self.ctx, server_hostname="localhost")

    async def exchange(self, *parts: bytes, pause_s: float = 0.0) -> tuple[int, dict[str, str], Any]:
        reader, writer = await self.open()
        try:
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(pause_s)
            return await read_response(reader)
        finally:
            writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    assert headers["content-type"].startswith("application/json"), body
    return status, headers, orjson.loads(body)


@pytest.fixture
def raw(webapp: WebApp, tmp_path: Path) -> Raw:
    return Raw(webapp, tmp_path)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_quiet(logs: pytest.LogCaptureFixture) -> None:
    """No record at ERROR or above and no traceback at all; no request bytes in any line."""
    bad = [r for r in logs.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]
    text = "\n".join(r.getMessage() for r in logs.records)
    assert "s3cr3t" not in text and "aaaaaaaa" not in text and "\\x00" not in text


@pytest.mark.parametrize("case", sorted(CASES))
async def test_parser_rejections_answer_in_the_envelope(raw: Raw, logs: pytest.LogCaptureFixture, case: str) -> None:
    request, expected = CASES[case]
    logs.clear()
    status, _headers, body = await raw.exchange(request)
    assert status == expected
    assert body["meta"] == {"api_status": "stable", "version": VERSION}
    (error,) = body["errors"]
    assert (error["code"], error["title"]) == (1025, "Invalid request")
    assert "s3cr3t" not in error["details"] and "\\x00" not in error["details"] and "aaaa" not in error["details"]
    assert_quiet(logs)
    warnings = [r for r in logs.records if r.levelno == logging.WARNING and r.name == "openprem.webapp.http"]
    assert len(warnings) == 1 and f"HTTP {expected}" in warnings[0].getMessage()


async def test_body_malformed_after_the_handler_started(
    raw: Raw, admin: Api, logs: pytest.LogCaptureFixture, webapp: WebApp, tmp_path: Path
) -> None:
    """A chunked body whose framing breaks half-way: the route's read fails at once (aiohttp alone leaves it
    waiting until the client gives up, then logs a 500 traceback), the answer is 400/1025, the upload leaves
    nothing on the media volume and the connection closes."""
    for path, content_type, first in (
        ("/v1/media", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("/v1/messages", "application/json", b'{"to": "1'),
    ):
        logs.clear()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin.token}\r\n"
            f"Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        chunk = b"%x\r\n%s\r\n" % (len(first), first)
        reader, writer = await raw.open()
        try:
            writer.write(head + chunk)
            await writer.drain()
            await asyncio.sleep(0.2)  # the route is now reading the body
            writer.write(b"zz\r\nnot a chunk\r\n0\r\n\r\n")
            await writer.drain()
            status, _headers, body = await read_response(reader)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the one answer
        finally:
            writer.close()
        assert status == 400, body
        assert body["errors"][0]["code"] == 1025 and "malformed" in body["errors"][0]["details"]
        assert_quiet(logs)
    media = tmp_path / "data" / "media"
    assert not media.exists() or not list(media.iterdir())


async def test_body_malformed_while_queued_behind_another_request(
    raw: Raw, admin: Api, core: FakeCore, logs: pytest.LogCaptureFixture
) -> None:
    """Pipelined: a slow request runs while the next one's chunked body breaks.  The broken one still gets its
    400/1025 after the first answer, and the connection closes."""
    core.silent.add("health.get")  # /v1/health waits for coreapp (about a second), then answers "disconnected"
    slow = f"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin.token}\r\n\r\n"
    broken = (
        f"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin.token}\r\n"
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"to"\r\n'
    )
    logs.clear()
    reader, writer = await raw.open()
    try:
        writer.write((slow + broken).encode())
        await writer.drain()
        await asyncio.sleep(0.2)  # the health request is running, the POST queued behind it
        writer.write(b"zz\r\nnot a chunk\r\n0\r\n\r\n")
        await writer.drain()
        first = await read_response(reader)
        second = await read_response(reader)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    assert first[0] == 200 and first[2]["health"]["gateway_status"] == "disconnected"
    assert second[0] == 400 and second[2]["errors"][0]["code"] == 1025, second
    assert_quiet(logs)


async def test_client_hanging_up_mid_upload_is_one_info_line(
    raw: Raw, admin: Api, logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    _reader, writer = await raw.open()
    writer.write(
        (
            f"POST /v1/media HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin.token}\r\n"
            "Content-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        + b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        + b"\x00" * 5000
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.abort()

    async def answered() -> bool:
        return any(r.name == "openprem.webapp.access" and "/v1/media" in r.getMessage() for r in logs.records)

    for _ in range(200):
        if await answered():
            break
        await asyncio.sleep(0.025)
    assert await answered()
    assert_quiet(logs)
    assert any("client went away" in r.getMessage() for r in logs.records)
    media = tmp_path / "data" / "media"
    assert not media.exists() or not list(media.iterdir())  # the partial file is gone
