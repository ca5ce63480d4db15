"""A multiconnect deployment as separate processes: chatd, masters, coreapps (shard owners and standbys) and a
webapp, on one database and an authenticated Mosquitto, built on the end-to-end harness."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.e2e.harness import PYTHON, Api, Deployment, Proc, WebhookReceiver, wait_until

BUSINESS_CC, BUSINESS_NUMBER = "1", "2025550100"
BUSINESS_WA_ID = BUSINESS_CC + BUSINESS_NUMBER
PASSWORD = "S3cure!pass"
PHONES = [f"1202555{n:04d}" for n in range(200, 260)]
"""Phones on every shard of up to four."""


@dataclass
class Multiconnect(Deployment):
    masters: int = 2
    coreapps: int = 2
    shards: int = 1
    lease_ttl_s: float = 4.0

    def node_env(self, node: str, *, master: bool) -> dict[str, str]:
        env = self.app_env("coreapp")
        env.update(
            WA_APP_MULTICONNECT="1",
            WA_NODE_ID=node,
            WA_HA_LEASE_TTL=str(self.lease_ttl_s),
            WA_HA_RENEW_INTERVAL=str(self.lease_ttl_s / 4),
            WA_HA_MARGIN=str(self.lease_ttl_s / 4),
            WA_DATA_DIR=str(self.workdir / f"data-{node}"),
            WA_LOG_DIR=str(self.workdir / f"log-{node}"),
            # One key-store key for the deployment (each node has its own data dir).
            WA_KEYSTORE_KEY_FILE=str(self.workdir / "store.key"),
        )
        if master:
            env["WA_MASTER_NODE"] = "1"
        return env

    @property
    def master_names(self) -> list[str]:
        return [f"master-{i}" for i in range(1, self.masters + 1)]

    @property
    def coreapp_names(self) -> list[str]:
        return [f"core-{i}" for i in range(1, self.coreapps + 1)]

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc("chatd", [PYTHON, "-m", "chatd"], self.chatd_env()).start()
        await self.wait_http(f"http://127.0.0.1:{self.admin_port}/admin/health", "chatd")
        env = self.node_env("setup", master=True)
        for argv in (["-m", "coreapp", "migrate"], ["-m", "webapp", "migrate"], ["-m", "coreapp", "shards", "1"]):
            done = await asyncio.to_thread(subprocess.run, [PYTHON, *argv], env=env, capture_output=True, timeout=120)
            assert done.returncode == 0, done.stderr.decode()
        if self.shards != 1:
            raise ValueError("start with 1 shard; change it through the API")
        for name in self.master_names:
            self._proc(name, [PYTHON, "-m", "coreapp"], self.node_env(name, master=True)).start()
        for name in self.coreapp_names:
            self._proc(name, [PYTHON, "-m", "coreapp"], self.node_env(name, master=False)).start()
        web = self.app_env("webapp")
        web.update(WA_APP_MULTICONNECT="1", WA_NODE_ID="web-1")
        self._proc("webapp", [PYTHON, "-m", "webapp"], web).start()
        await self.wait_http(f"{self.web_url}/v1/health", "webapp", ok_statuses=(200, 401))

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.popen is not None and proc.popen.poll() is None:
                os.kill(proc.popen.pid, signal.SIGCONT)  # a paused node could not stop
        for name in ("webapp", *self.coreapp_names, *self.master_names, "chatd"):
            if name in self.procs:
                self.procs[name].stop()

    def proc(self, name: str) -> Proc:
        return self.procs[name]

    def signal(self, name: str, signum: int) -> None:
        popen = self.procs[name].popen
        assert popen is not None
        os.kill(popen.pid, signum)


async def health(api: Api) -> dict[str, dict[str, str]]:
    status, body = await api.call("GET", "/v1/health")
    assert status == 200, body
    nodes: dict[str, dict[str, str]] = body["health"]
    return nodes


async def wait_for_roles(api: Api, predicate: Any, what: str, timeout_s: float = 60) -> None:
    async def check() -> bool:
        return bool(predicate(await health(api)))

    await wait_until(check, timeout_s, what)


async def setup_number(cluster: Multiconnect, api: Api, receiver: WebhookReceiver, shards: int) -> None:
    """Password change, phones, registration through the primary master, webhooks, then the shard count."""
    basic = ("admin", "secret")
    status, body = await api.call("POST", "/v1/users/login", {"new_password": PASSWORD}, basic=basic)
    assert status == 200, body
    api.token = body["users"][0]["token"]
    for phone in PHONES:
        status, _ = await api.admin("POST", f"{cluster.admin_url}/admin/phones", {"wa_id": phone, "name": phone})
        assert status in (200, 201)
    await wait_for_roles(
        api, lambda nodes: any(n["role"] == "primary_master" for n in nodes.values()), "a primary master"
    )
    status, body = await api.admin(
        "POST",
        f"{cluster.admin_url}/admin/certificates",
        {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "vname": "OpenPrem HA"},
    )
    assert status in (200, 201), body
    register = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "method": "sms", "cert": body["cert"]}
    status, body = await api.call("POST", "/v1/account", register)
    assert status == 202, body
    status, body = await api.admin("GET", f"{cluster.admin_url}/admin/codes/{BUSINESS_WA_ID}")
    status, body = await api.call("POST", "/v1/account/verify", {"code": body["code"]})
    assert status in (200, 201), body
    status, body = await api.call("PATCH", "/v1/settings/application", {"webhooks": {"url": receiver.url}})
    assert status == 200, body
    if shards != 1:
        status, body = await api.call(
            "POST", "/v1/account/shards", {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "shards": shards}
        )
        assert status == 201, body
    await wait_for_roles(api, lambda nodes: connected_owners(nodes) == shards, f"{shards} connected shard owners")


def connected_owners(nodes: dict[str, dict[str, str]]) -> int:
    return sum(1 for n in nodes.values() if n["role"] == "coreapp" and n["gateway_status"] == "connected")


async def send_retrying(api: Api, to: str, text: str, key: str, timeout_s: float = 60) -> str:
    """A client the On-Prem way: 1017/1018/1011 (503) mean retry; an ``Idempotency-Key`` makes it one message."""
    deadline = time.monotonic() + timeout_s
    body = {"to": to, "type": "text", "text": {"body": text}}
    while True:
        headers = {"Authorization": f"Bearer {api.token}", "Idempotency-Key": key}
        try:
            async with api.session.post(f"{api.base}/v1/messages", json=body, headers=headers, ssl=False) as resp:
                answer = await resp.json(content_type=None)
                if resp.status in (200, 201):
                    return str(answer["messages"][0]["id"])
                codes = {e.get("code") for e in answer.get("errors", [])}
                assert resp.status == 503 and codes & {1011, 1017, 1018}, answer
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"no send accepted for {to} within {timeout_s}s"
        await asyncio.sleep(0.2)


async def inbox_ids(api: Api, cluster: Multiconnect, phone: str) -> list[str]:
    status, body = await api.admin("GET", f"{cluster.admin_url}/admin/phones/{phone}/inbox")
    assert status == 200, body
    return [m["id"] for m in body["messages"]]
