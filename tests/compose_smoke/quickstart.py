"""README quick start (a)-(g) against a running compose stack, with a webhook receiver in this process.

The HTTP calls are the README's curl commands (``-k``: webapp's self-signed certificate); the sandbox commands are
``docker compose exec -T chatd python -m chatd …``, as README "Docker compose" says.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import BasicAuth, ClientSession, ClientTimeout, TCPConnector, web

from tests.compose_smoke.engine import SmokeError, log

BUSINESS = "12025550100"
PHONE = "12025550123"
NEW_PASSWORD = "OpenPrem-Demo-1"  # the README's demo password
TEXT_OUT = "Hello from OpenPrem"
TEXT_IN = "Hi back"


class WebhookReceiver:
    """Every POST to /webhook, answered 200 (what ``openprem webhook-echo`` does)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.posts: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if isinstance(body, dict):
            self.posts.append(body)
        return web.json_response({})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def find(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        return next((p for p in self.posts if pred(p)), None)

    async def wait_for(self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (found := self.find(pred)) is None:
            if time.monotonic() > deadline:
                raise SmokeError(f"no webhook with {what} within {timeout:.0f} s (got {json.dumps(self.posts)[:2000]})")
            await asyncio.sleep(0.2)
        return found


def _statuses(post: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in post.get("statuses", []) if isinstance(s, dict)]


def _messages(post: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in post.get("messages", []) if isinstance(m, dict)]


def _has_status(message_id: str, status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda post: any(s.get("id") == message_id and s.get("status") == status for s in _statuses(post))


async def run_quickstart(
    api: str, sandbox: Sequence[str], sandbox_env: Mapping[str, str], receiver: WebhookReceiver
) -> dict[str, float]:
    """Steps (a)-(g); returns each step's seconds.  ``sandbox`` is the argv prefix of ``python -m chatd`` in the
    chatd container (run with ``sandbox_env``, which reaches the engine)."""

    async def chatd_cli(*args: str) -> str:
        done = await asyncio.to_thread(
            subprocess.run,
            [*sandbox, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=dict(sandbox_env),
        )
        if done.returncode != 0:
            raise SmokeError(f"python -m chatd {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout.strip()

    times: dict[str, float] = {}
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # the README's curl -k: webapp's self-signed certificate
    async with ClientSession(connector=TCPConnector(ssl=insecure), timeout=ClientTimeout(total=60)) as http:

        async def call(method: str, path: str, token: str | None, body: Any = None, **kw: Any) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.request(method, api + path, json=body, headers=headers, **kw) as resp:
                text = await resp.text()
                try:
                    return resp.status, json.loads(text) if text else {}
                except ValueError:
                    return resp.status, text

        def step(name: str, started: float) -> None:
            times[name] = time.monotonic() - started
            log(f"quick start {name}: ok ({times[name]:.1f} s)")

        # (a) the first login must set a new password; the old one is refused afterwards.
        t = time.monotonic()
        status, doc = await call("POST", "/users/login", None, {"new_password": NEW_PASSWORD},
                                 auth=BasicAuth("admin", "secret"))
        if status != 200:
            raise SmokeError(f"(a) login with the default password: HTTP {status} {doc}")
        token = str(doc["users"][0]["token"])
        status, _ = await call("POST", "/users/login", None, auth=BasicAuth("admin", "secret"))
        if status != 401:
            raise SmokeError(f"(a) the default password still logs in after the change (HTTP {status})")
        step("(a) login + forced password change", t)

        # (b) a verified-name certificate from the sandbox, then register (202).
        t = time.monotonic()
        cert = await chatd_cli("cert", "--cc", "1", "--phone-number", BUSINESS[1:], "--vname", "OpenPrem Demo")
        body = {"cc": "1", "phone_number": BUSINESS[1:], "method": "sms", "cert": cert}
        status, doc = await call("POST", "/account", token, body)
        if status != 202 or doc.get("account") != [{"vname": "OpenPrem Demo"}]:
            raise SmokeError(f"(b) register: HTTP {status} {doc}")
        step("(b) register via the sandbox", t)

        # (c) the code "sent by SMS", verify (201), then health says connected.
        t = time.monotonic()
        code = await chatd_cli("code", BUSINESS)
        status, doc = await call("POST", "/account/verify", token, {"code": code})
        if status != 201:
            raise SmokeError(f"(c) verify: HTTP {status} {doc}")
        deadline = time.monotonic() + 90
        while True:
            status, doc = await call("GET", "/health", token)
            if status == 200 and doc.get("health", {}).get("gateway_status") == "connected":
                break
            if time.monotonic() > deadline:
                raise SmokeError(f"(c) health is not connected after 90 s: HTTP {status} {doc}")
            await asyncio.sleep(1)
        step("(c) verify + health connected", t)

        # (d) webhooks to the receiver.
        t = time.monotonic()
        status, doc = await call("PATCH", "/settings/application", token, {"webhooks": {"url": receiver.url}})
        if status != 200:
            raise SmokeError(f"(d) set the webhook: HTTP {status} {doc}")
        step("(d) webhook set", t)

        # (e) a text to the demo phone; delivered and read reach the webhook.
        t = time.monotonic()
        status, doc = await call("POST", "/messages", token, {"to": PHONE, "type": "text", "text": {"body": TEXT_OUT}})
        if status not in (200, 201) or not doc.get("messages"):
            raise SmokeError(f"(e) send: HTTP {status} {doc}")
        message_id = doc["messages"][0]["id"]
        for wanted in ("delivered", "read"):
            await receiver.wait_for(f"status {wanted} of {message_id}", _has_status(message_id, wanted))
        step("(e) send + delivered/read webhooks", t)

        # (f) the phone received and decrypted it.
        t = time.monotonic()
        inbox = json.loads(await chatd_cli("inbox", PHONE))
        if TEXT_OUT not in json.dumps(inbox, ensure_ascii=False):
            raise SmokeError(f"(f) the phone's inbox lacks the message: {inbox}")
        step("(f) the phone's inbox", t)

        # (g) the phone replies; the inbound message (with the contact's profile) reaches the webhook.
        t = time.monotonic()
        sent = json.loads(await chatd_cli("send", PHONE, "--to", BUSINESS, "--text", TEXT_IN))
        if not isinstance(sent, dict) or not sent:
            raise SmokeError(f"(g) the phone's send: {sent}")
        post = await receiver.wait_for(
            f"the inbound {TEXT_IN!r}",
            lambda p: any(m.get("text", {}).get("body") == TEXT_IN and m.get("from") == PHONE for m in _messages(p)),
        )
        if not post.get("contacts"):
            raise SmokeError(f"(g) the inbound webhook has no contacts: {post}")
        step("(g) reply reaches the webhook", t)
    return times
