"""A multiconnect deployment as separate processes: chatd, masters, coreapps (shard owners and standbys) and a
webapp, on one database and an authenticated Mosquitto, built on the end-to-end harness."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Any

from tests.e2e.harness import PYTHON, Api, Deployment, Proc, wait_until


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
