"""The console (``/console``) in a real headless Chromium against a real deployment (chatd + webapp/coreapp as OS
processes, the e2e harness).

Through the page: the forced first password change at login, health, registration, the application settings; a
message sent through the API shows in the message flow and the totals; its status webhooks fail (the receiver
answers 500), are dead-lettered after ``WA_WEBHOOK_MAX_ATTEMPTS`` and listed with a Replay button; once the
receiver is well again, a click on Replay delivers the event again with the same event id, and the log shows it.
No request of the page is refused by its Content-Security-Policy (the browser's console says so).

``WA_CONSOLE_SCREENSHOT=docs/console.png`` keeps the screenshot of the filled page there (README's picture).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.browser.chromium import Browser, chromium_or_skip
from tests.e2e.harness import Api, Deployment, wait_until
from tests.support.ports import free_port
from tests.support.services import db_settings_for

pytestmark = pytest.mark.e2e

BUSINESS_CC, BUSINESS_NUMBER = "1", "2025550100"
BUSINESS_WA_ID = BUSINESS_CC + BUSINESS_NUMBER
PHONE = "12025550123"
NEW_PASSWORD = "C0nsole!pass"
VIEWER_PASSWORD = "V1ewer!pass"
EVENT_ID_HEADER = "X-OpenPrem-Event-Id"


class FlakyReceiver:
    """A webhook receiver that answers 500 while ``failing``, 200 after; it records every POST."""

    def __init__(self) -> None:
        self.port = free_port()
        self.failing = True
        self.posts: list[tuple[str, int, dict[str, Any]]] = []  # (event id, answer, body)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        status = 500 if self.failing else 200
        self.posts.append((request.headers.get(EVENT_ID_HEADER, ""), status, await request.json()))
        return web.Response(status=status)

    def delivered(self) -> set[str]:
        return {event for event, status, _ in self.posts if status == 200}


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    """SQLite: the embedded webapp+coreapp process beside a chatd process; two failed attempts dead-letter."""
    db = db_settings_for("sqlite", tmp_path)
    dep = Deployment(tmp_path / "deploy", db, None, {"WA_WEBHOOK_MAX_ATTEMPTS": "2"})
    try:
        await dep.start()
        yield dep
    finally:
        await dep.stop()
        print(dep.logs())


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    chromium, driver = chromium_or_skip()
    instance = Browser(chromium, driver, tmp_path / "chromium-profile")
    try:
        yield instance
    finally:
        await instance.close()


async def register(dep: Deployment, api: Api, receiver: FlakyReceiver) -> None:
    """The number, as the quick start does it (through the API; the page only shows the result)."""
    status, body = await api.call("POST", "/v1/users/login", basic=("admin", NEW_PASSWORD))
    assert status == 200, body
    api.token = body["users"][0]["token"]
    status, _ = await api.admin("POST", f"{dep.admin_url}/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    assert status in (200, 201)
    cert_request = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "vname": "OpenPrem Console"}
    status, body = await api.admin("POST", f"{dep.admin_url}/admin/certificates", cert_request)
    assert status in (200, 201), body
    register_body = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "method": "sms", "cert": body["cert"]}
    status, body = await api.call("POST", "/v1/account", register_body)
    assert status == 202, body
    status, body = await api.admin("GET", f"{dep.admin_url}/admin/codes/{BUSINESS_WA_ID}")
    assert status == 200, body
    status, body = await api.call("POST", "/v1/account/verify", {"code": body["code"]})
    assert status in (200, 201), body

    async def connected() -> bool:
        _, health = await api.call("GET", "/v1/health")
        return bool(health.get("health", {}).get("gateway_status") == "connected")

    await wait_until(connected, 60, "gateway_status connected")
    patch = {
        "webhooks": {"url": receiver.url},
        "sent_status": True,
        "callback_backoff_delay_ms": 100,
        "max_callback_backoff_delay_ms": 200,
    }
    status, body = await api.call("PATCH", "/v1/settings/application", patch)
    assert status == 200, body


def flow_sums(text: str) -> list[int]:
    """The per-minute table's columns summed (rows ``HH:MM sent delivered read``, a dash for no samples)."""
    sums = [0, 0, 0]
    for line in text.splitlines()[1:]:
        cells = line.split()[-3:]
        if len(cells) == 3:
            for i, cell in enumerate(cells):
                sums[i] += int(cell.replace(",", "")) if cell.isdigit() else 0
    return sums


async def test_console_login_flow_and_replay(deployment: Deployment, browser: Browser) -> None:
    receiver = FlakyReceiver()
    await receiver.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, deployment.web_url)
            await _run(deployment, browser, api, receiver)
    finally:
        await receiver.stop()


async def _run(dep: Deployment, browser: Browser, api: Api, receiver: FlakyReceiver) -> None:
    # The shell is public; without a token the page shows only the login form.
    await browser.get(f"{dep.web_url}/console")
    await browser.wait_visible("#login-form", 15, "the login form")
    assert not await browser.visible("#dashboard")

    # First login of the default admin: the page asks for a new password, then logs in with it.
    await browser.type("#login-user", "admin")
    await browser.type("#login-password", "secret")
    await browser.click("#login-submit")
    await browser.wait_visible("#new-password-fields", 15, "the new-password fields")
    await browser.type("#login-new-password", NEW_PASSWORD)
    await browser.type("#login-new-password2", NEW_PASSWORD)
    await browser.click("#login-submit")
    await browser.wait_visible("#dashboard", 15, "the dashboard")
    assert await browser.text("#whoami") == "admin"
    token = await browser.script("return JSON.parse(sessionStorage.getItem('openprem.console.session')).token")
    assert isinstance(token, str) and token.count(".") == 2
    assert await browser.script("return window.localStorage.length") == 0

    # Not registered yet: health and registration say so.
    await browser.wait_text("#account-list", lambda t: "registered\nno" in t, 15, "registered: no")

    await register(dep, api, receiver)
    await browser.click("#refresh")
    await browser.wait_text("#health-table", lambda t: "connected" in t and "disconnected" not in t, 20, "connected")
    await browser.wait_text("#account-list", lambda t: "registered\nyes" in t, 20, "registered: yes")
    settings = await browser.wait_text("#settings-json", lambda t: receiver.url in t, 20, "the webhook URL")
    assert '"callback_backoff_delay_ms": 100' in settings

    # A message through the API: the flow counts it in this minute, the totals list it.
    status, body = await api.call("POST", "/v1/messages", {"to": PHONE, "type": "text", "text": {"body": "hi"}})
    assert status in (200, 201), body
    message_id = body["messages"][0]["id"]
    totals = await browser.wait_text("#totals-table", lambda t: "outbound read 1" in t, 30, "the read message")
    assert "outbound read 1" in totals
    await browser.wait_text("#flow-table", lambda t: flow_sums(t) == [1, 1, 1], 30, "1 sent, delivered and read")

    # Its status webhooks fail twice each and are dead-lettered: the page lists them with a Replay button.
    dead = await browser.wait_text(
        "#dead-table", lambda t: t.count("Replay") >= 3, 60, "the dead-lettered status webhooks"
    )
    assert "max_attempts" in dead
    failed_events = {event for event, status, _ in receiver.posts if status == 500}
    count = dead.count("Replay")
    assert count == len(failed_events) >= 3 and receiver.delivered() == set()
    await browser.wait_text("#backlog-list", lambda t: f"dead letters\n{count}" in t, 20, f"{count} dead letters")
    await browser.wait_text("#log-table", lambda t: "HTTP 500" in t and "dead_lettered" in t, 20, "the failures")

    # The page with its dead letters (README's picture, when asked for).
    target = os.environ.get("WA_CONSOLE_SCREENSHOT")
    if target:
        height = await browser.script("return document.documentElement.scrollHeight")
        await browser.run(browser.driver.set_window_size, 1280, min(int(height) + 40, 1800))
        await browser.screenshot(Path(target))

    # The receiver is well again; Replay on the first row queues that one event again, with the same id.
    receiver.failing = False
    event_id = await browser.script("return document.querySelector('#dead-table button.replay').dataset.event")
    assert event_id in failed_events
    await browser.click("#dead-table button.replay")
    one = f"1 queued again, {count - 1} still dead-lettered"
    await browser.wait_text("#replay-result", lambda t: one in t, 20, "the replay's answer")
    await wait_until(lambda: event_id in receiver.delivered(), 30, "the replayed webhook")
    (replayed,) = [body for event, status, body in receiver.posts if event == event_id and status == 200]
    assert replayed["statuses"][0]["id"] == message_id
    await browser.wait_text("#log-table", lambda t: "replayed" in t, 20, "the replay in the log")
    await browser.wait_text("#dead-table", lambda t: t.count("Replay") == count - 1, 20, "the others left")

    # Replay all delivers the rest; the page ends with no dead letters.
    await browser.click("#replay-all")
    rest = f"{count - 1} queued again, 0 still dead-lettered"
    await browser.wait_text("#replay-result", lambda t: rest in t, 20, "the replay-all answer")
    await wait_until(lambda: receiver.delivered() == failed_events, 30, "every replayed webhook")
    await browser.wait_text("#dead-table", lambda t: "none" in t, 20, "no dead letters")

    # Nothing the page did was refused by its CSP, and it logged no error.
    problems = [e["message"] for e in await browser.console_log() if e.get("level") == "SEVERE"]
    expected = [m for m in problems if "/v1/users/login" in m and "status of 401" in m]  # the forced change
    assert len(expected) == 1 and problems == expected, problems

    # A user without ROLE_ADMIN (made now: the admin's logout below revokes the API client's token too).
    status, body = await api.call("POST", "/v1/users", {"username": "viewer", "password": VIEWER_PASSWORD})
    assert status in (200, 201), body

    # Logging out drops the token: the page is back at the login form and the token no longer works.
    await browser.click("#logout")
    await browser.wait_visible("#login-form", 15, "the login form after logout")
    assert await browser.script("return sessionStorage.getItem('openprem.console.session')") is None
    check = Api(api.session, dep.web_url)
    check.token = token
    status, body = await check.call("GET", "/v1/stats/app")
    assert status == 401, body

    # The viewer sees what its token may read: health, stats and the flow; the admin sections say so.
    await browser.type("#login-user", "viewer")
    await browser.type("#login-password", VIEWER_PASSWORD)
    await browser.click("#login-submit")
    await browser.wait_visible("#dashboard", 15, "the viewer's dashboard")
    assert await browser.text("#whoami") == "viewer"
    await browser.wait_text("#health-table", lambda t: "connected" in t, 20, "health for the viewer")
    await browser.wait_text("#totals-table", lambda t: "outbound read 1" in t, 20, "the totals for the viewer")
    await browser.wait_text("#dead-table", lambda t: "needs ROLE_ADMIN" in t, 20, "dead letters refused")
    await browser.wait_text("#account-list", lambda t: "needs ROLE_ADMIN" in t, 20, "support refused")
    assert await browser.visible("#replay-all") and not await browser.run(
        lambda: browser.driver.find_element("css selector", "#replay-all").is_enabled()
    )
