"""A multiconnect deployment on this machine: every node its own OS process on loopback (issue 11).

``Cluster`` starts what a multiconnect install runs (reference §5, ``docs/architecture.md``): a private
Mosquitto (no anonymous clients: a password file made afresh by ``mosquitto_passwd`` for the ``webapp`` and
``coreapp`` identities, the shipped ``conf/mosquitto.acl``), chatd, the migrations (``python -m coreapp migrate``,
``python -m webapp migrate``), the shard count (``python -m coreapp shards N``), then the masters
(``WA_MASTER_NODE=1``), the coreapps (``shards + standbys``) and the webapps, all ``WA_APP_MULTICONNECT=1`` with
a ``WA_NODE_ID`` of their own, on one MariaDB/PostgreSQL database and one media directory.  ``start`` returns once
every webapp answers ``/v1/health`` (200 or 401) and chatd's admin health.

Each node can be SIGKILLed (``kill``), SIGSTOPped (``pause``/``resume``) and restarted by name, for the HA tests
(``tests/ha``) and for trying failover by hand (``python -m openprem run --multiconnect``).  Every process writes
to ``<workdir>/logs/<name>.log``; ``logs()`` is their tails, for a failure message.

Layout under ``workdir``: ``logs/``, ``nodes/<name>/`` (each node's working and log directory), ``data/coreapp``
(shared by masters and coreapps: the key-store key, which all of them must use), ``data/webapp`` (shared by the
webapps: the JWT key and the TLS certificate, so a token and the certificate are the same on every webapp),
``media/`` (shared), ``chatd/`` (the sandbox's state and CA), ``mosquitto/`` (config, password file, persistence).
The database is the caller's (``db``); ``Cluster`` neither creates (the migrations do) nor drops it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from openprem.broker import BrokerSetupError, mosquitto_binary, mosquitto_config, write_password_file
from openprem.nodes import BUS_IDENTITIES, SHARD_COUNTS, Node, Role, db_env, plan_nodes
from openprem.ports import port_or_free
from openprem.procs import NodeProcess
from shared.config import DbEngine, DbSettings

__all__ = ["SHARD_COUNTS", "Cluster", "ClusterError", "Node", "Role", "db_env", "plan_nodes"]

log = logging.getLogger("openprem.multiconnect")

ROOT = Path(__file__).resolve().parents[1]
ACL_FILE = ROOT / "conf" / "mosquitto.acl"
INFRA = ("mosquitto", "chatd")
HEALTH_OK = (200, 401)
STOP_TIMEOUT_S = 15.0


class ClusterError(RuntimeError):
    """The deployment could not start (the message carries the log tails)."""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Cluster:
    """A local multiconnect deployment: ``masters`` masters, ``shards + standbys`` coreapps, ``webapps`` webapps."""

    workdir: Path
    db: DbSettings
    masters: int = 2
    shards: int = 1
    standbys: int = 1
    webapps: int = 2
    lease_ttl_s: float = 6.0
    renew_every_s: float = 1.5
    margin_s: float = 1.5
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """For every app process; its ``WA_SANDBOX_*`` entries go to chatd instead."""
    node_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per node name (``core-2``, ``chatd``, ...), applied last."""
    demo_phones: bool = False
    """``WA_SANDBOX_DEMO=1``: chatd creates the quick start's demo phones."""
    allow_loopback: bool = True
    """Webhooks and media links may reach loopback (``WA_FETCH_ALLOW_LOOPBACK``, plain-HTTP loopback webhooks)."""
    preferred_ports: Mapping[str, int] = field(default_factory=dict)
    """Port name (``web-1``, ``chatd-admin``, ``chat``, ...) -> port to use when free; the rest are free ports."""
    bus_instance: str = "openprem"
    log_level: str = "INFO"
    python: str = sys.executable
    acl_file: Path = ACL_FILE
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        problems = []
        if self.db.engine is DbEngine.SQLITE:
            problems.append("multiconnect needs MariaDB/MySQL or PostgreSQL (one database all nodes share)")
        if self.shards not in SHARD_COUNTS:
            problems.append(f"shards must be one of {', '.join(map(str, SHARD_COUNTS))}")
        if self.masters < 1 or self.standbys < 0 or self.webapps < 1:
            problems.append("at least 1 master and 1 webapp, and no negative standbys")
        if problems:
            raise ValueError("; ".join(problems))
        self.workdir = self.workdir.resolve()
        self.nodes = plan_nodes(self.masters, self.shards + self.standbys, self.webapps)
        names = ["mqtt", "chat", "chat-fallback", "chatd-admin", "chatd-media"]
        names += [n.name for n in self.nodes if n.role is Role.WEBAPP]
        self.ports: dict[str, int] = {name: port_or_free(self.preferred_ports.get(name)) for name in names}
        self.mqtt_users = {user: secrets.token_urlsafe(18) for user in BUS_IDENTITIES}
        self.api_key = secrets.token_urlsafe(32)
        """``WA_WEB_API_KEY`` of every webapp: ``health()`` reads ``/v1/health`` with it."""
        self.procs: dict[str, NodeProcess] = {}
        self._by_name = {node.name: node for node in self.nodes}

    # --- names and addresses -----------------------------------------------------------------------------

    @property
    def node_names(self) -> list[str]:
        """The app nodes in start order: ``master-1``, ..., ``core-1``, ..., ``web-1``, ..."""
        return [node.name for node in self.nodes]

    def names(self, role: Role) -> list[str]:
        return [node.name for node in self.nodes if node.role is role]

    @property
    def web_urls(self) -> list[str]:
        return [f"https://127.0.0.1:{self.ports[name]}" for name in self.names(Role.WEBAPP)]

    @property
    def admin_url(self) -> str:
        """chatd's admin API (``/admin/...``; ``python -m chatd --admin-url`` takes it)."""
        return f"http://127.0.0.1:{self.ports['chatd-admin']}"

    @property
    def database(self) -> str:
        return self.db.database

    def log_path(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    # --- environments ------------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
        # The nodes run this very source tree (the parent may run from a checkout that is not installed).
        path = [str(ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT))]
        env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(path), WA_LOG_LEVEL=self.log_level)
        return env

    def chatd_env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(
            WA_DATA_DIR=str(self.workdir / "nodes" / "chatd" / "data"),
            WA_LOG_DIR=str(self.workdir / "nodes" / "chatd" / "log"),
            WA_SANDBOX_HOSTNAME="127.0.0.1",
            WA_SANDBOX_PORT=str(self.ports["chat"]),
            WA_SANDBOX_FALLBACK_PORT=str(self.ports["chat-fallback"]),
            WA_SANDBOX_ADMIN_HOSTNAME="127.0.0.1",
            WA_SANDBOX_ADMIN_PORT=str(self.ports["chatd-admin"]),
            WA_SANDBOX_MEDIA_PORT=str(self.ports["chatd-media"]),
            WA_SANDBOX_DATA_DIR=str(self.workdir / "chatd"),
        )
        if self.demo_phones:
            env["WA_SANDBOX_DEMO"] = "1"
        env.update({k: v for k, v in self.extra_env.items() if k.startswith("WA_SANDBOX_")})
        env.update(self.node_env.get("chatd", {}))
        return env

    def app_env(self, node: Node) -> dict[str, str]:
        """The environment of one app node (also of the one-shot commands, as a node of their own name)."""
        env = self._base_env()
        env.update(db_env(self.db))
        data = "webapp" if node.role is Role.WEBAPP else "coreapp"
        env.update(
            WA_DATA_DIR=str(self.workdir / "data" / data),
            WA_MEDIA_DIR=str(self.workdir / "media"),
            WA_LOG_DIR=str(self.workdir / "nodes" / node.name / "log"),
            WA_CHAT_HOSTNAME="127.0.0.1",
            WA_CHAT_PORT=str(self.ports["chat"]),
            WA_CHAT_FALLBACK_PORT=str(self.ports["chat-fallback"]),
            WA_CHAT_MEDIA_PORT=str(self.ports["chatd-media"]),
            WA_CHAT_CA_FILE=str(self.workdir / "chatd" / "ca.pem"),
            WA_BUS="MQTT",
            WA_MQTT_HOSTNAME="127.0.0.1",
            WA_MQTT_PORT=str(self.ports["mqtt"]),
            WA_MQTT_USERNAME=node.bus_identity,
            WA_MQTT_PASSWORD=self.mqtt_users[node.bus_identity],
            WA_BUS_INSTANCE=self.bus_instance,
            WA_APP_MULTICONNECT="1",
            WA_NODE_ID=node.name,
            WA_HA_LEASE_TTL=str(self.lease_ttl_s),
            WA_HA_RENEW_INTERVAL=str(self.renew_every_s),
            WA_HA_MARGIN=str(self.margin_s),
        )
        if node.role is Role.MASTER:
            env["WA_MASTER_NODE"] = "1"
        if node.role is Role.WEBAPP:
            port = self.ports.get(node.name)
            env.update(WA_WEB_HOSTNAME="127.0.0.1", WA_WEB_API_KEY=self.api_key)
            if port is not None:
                env["WA_WEB_PORT"] = str(port)
        if self.allow_loopback:
            env.update(WA_WEBHOOK_ALLOW_HTTP_LOOPBACK="1", WA_FETCH_ALLOW_LOOPBACK="1")
        env.update({k: v for k, v in self.extra_env.items() if not k.startswith("WA_SANDBOX_")})
        env.update(self.node_env.get(node.name, {}))
        return env

    # --- processes ---------------------------------------------------------------------------------------

    def _proc(self, name: str, argv: list[str], env: dict[str, str]) -> NodeProcess:
        proc = self.procs.get(name)
        if proc is None:
            proc = NodeProcess(name, argv, env, self.log_path(name), self.workdir / "nodes" / name)
            self.procs[name] = proc
        return proc

    def _mosquitto_proc(self) -> NodeProcess:
        binary = mosquitto_binary()
        if binary is None:
            raise ClusterError("mosquitto is not installed (apt-get install mosquitto)")
        config = self.workdir / "mosquitto" / "mosquitto.conf"
        return self._proc("mosquitto", [binary, "-c", str(config)], self._base_env())

    def _app_proc(self, node: Node) -> NodeProcess:
        return self._proc(node.name, [self.python, "-m", node.module], self.app_env(node))

    def proc(self, name: str) -> NodeProcess:
        try:
            return self.procs[name]
        except KeyError:
            raise KeyError(f"no process {name!r}; started: {', '.join(self.procs) or 'none'}") from None

    async def _prepare_broker(self) -> None:
        if not self.acl_file.is_file():
            raise ClusterError(f"the broker's ACL {self.acl_file} is missing (run from a checkout, or set acl_file)")
        directory = self.workdir / "mosquitto"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        password_file = directory / "auth" / "passwd"
        try:
            await asyncio.to_thread(write_password_file, password_file, self.mqtt_users)
        except BrokerSetupError as exc:
            raise ClusterError(str(exc)) from None
        config = mosquitto_config(self.ports["mqtt"], directory, password_file, self.acl_file.resolve())
        (directory / "mosquitto.conf").write_text(config)

    async def start(self) -> None:
        """Broker, chatd, migrations, shard count, masters, coreapps, webapps; then wait until the webapps and
        chatd answer.  On failure everything started is stopped and ``ClusterError`` carries the log tails."""
        for sub in ("logs", "nodes", "media", "chatd", "data/coreapp", "data/webapp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        for private in ("data/coreapp", "data/webapp"):
            (self.workdir / private).chmod(0o700)
        try:
            await self._prepare_broker()
            self._mosquitto_proc().start()
            await self.wait_port("mosquitto", self.ports["mqtt"])
            self._proc("chatd", [self.python, "-m", "chatd"], self.chatd_env()).start()
            await self.wait_http("chatd", f"{self.admin_url}/admin/health", (200,))
            await self.run_once("migrate-coreapp", Node("migrate-coreapp", Role.COREAPP), ["migrate"])
            await self.run_once("migrate-webapp", Node("migrate-webapp", Role.WEBAPP), ["migrate"])
            await self.set_shards(self.shards)
            for node in self.nodes:
                self._app_proc(node).start()
            await self._wait_ready((*INFRA, *self.node_names))  # during start, any node that exits is a failure
        except BaseException:
            await self.stop()
            raise

    async def set_shards(self, count: int) -> None:
        """``python -m coreapp shards <count>`` (writes the shard map when no change is under way)."""
        await self.run_once("shards", Node("shards", Role.COREAPP), ["shards", str(count)])

    async def run_once(self, name: str, node: Node, args: list[str], timeout_s: float | None = None) -> None:
        """A one-shot command of ``node.module`` with ``node``'s environment; ``ClusterError`` unless it exits 0."""
        env = self.app_env(node)
        env.pop("WA_WEB_PORT", None)
        proc = NodeProcess(name, [self.python, "-m", node.module, *args], env, self.log_path(name), self.workdir)
        self.procs[name] = proc
        proc.start()
        code = await proc.wait_exit(timeout_s or self.start_timeout_s)
        if code is None:
            proc.kill()
        if code != 0:
            raise ClusterError(f"`python -m {node.module} {' '.join(args)}` exited with {code}\n{proc.tail()}")

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Every webapp answers ``/v1/health`` (200 or 401) and chatd its admin health (a webapp or chatd that
        exits meanwhile fails it at once)."""
        await self._wait_ready(("chatd", *self.names(Role.WEBAPP)), timeout_s)

    async def _wait_ready(self, watch: Sequence[str], timeout_s: float | None = None) -> None:
        await self.wait_http("chatd", f"{self.admin_url}/admin/health", (200,), timeout_s, watch=watch)
        for name, url in zip(self.names(Role.WEBAPP), self.web_urls, strict=True):
            await self.wait_http(name, f"{url}/v1/health", HEALTH_OK, timeout_s, watch=watch)

    def _check_alive(self, waiting_for: str, watch: Sequence[str] | None) -> None:
        """``ClusterError`` when a process of ``watch`` (default: the one waited for) has exited."""
        for name in watch if watch is not None else (waiting_for,):
            proc = self.procs.get(name)
            if proc is not None and proc.popen is not None and not proc.alive():
                raise ClusterError(
                    f"{name} exited with {proc.returncode} while waiting for {waiting_for}\n{self.logs()}"
                )

    async def wait_port(self, name: str, port: int, timeout_s: float | None = None) -> None:
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        while not await asyncio.to_thread(_port_open, port):
            self._check_alive(name, None)
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} did not listen on {port}\n{self.logs()}")
            await asyncio.sleep(0.1)

    async def wait_http(
        self,
        name: str,
        url: str,
        ok: tuple[int, ...] = (200,),
        timeout_s: float | None = None,
        *,
        watch: Sequence[str] | None = None,
    ) -> None:
        """Until ``url`` answers one of ``ok``; ``ClusterError`` on timeout or when a process of ``watch`` (default
        ``name``) exits."""
        deadline = time.monotonic() + (timeout_s or self.start_timeout_s)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._check_alive(name, watch)
                try:
                    async with session.get(url, ssl=False) as resp:
                        if resp.status in ok:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise ClusterError(f"{name} did not answer at {url}\n{self.logs()}")
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        """Webapps, coreapps, masters (each group at once), then chatd and the broker, and any one-shot command
        still running; SIGKILL after a timeout."""
        groups = [self.names(Role.WEBAPP), self.names(Role.COREAPP), self.names(Role.MASTER), ["chatd"], ["mosquitto"]]
        listed = {name for group in groups for name in group}
        groups.append([name for name in self.procs if name not in listed])
        for group in groups:
            procs = [self.procs[name] for name in group if name in self.procs]
            await asyncio.gather(*(proc.terminate(STOP_TIMEOUT_S) for proc in procs))

    # --- faults ------------------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` (a node, ``chatd`` or ``mosquitto``): a crash, nothing cleaned up."""
        self.proc(name).kill()

    def pause(self, name: str) -> None:
        """SIGSTOP ``name``: it holds its connections and stops renewing anything."""
        self.proc(name).pause()

    def resume(self, name: str) -> None:
        self.proc(name).resume()

    async def terminate(self, name: str) -> int | None:
        """SIGTERM ``name`` and wait for it to stop (a clean shutdown)."""
        return await self.proc(name).terminate(STOP_TIMEOUT_S)

    async def restart(self, name: str, *, kill: bool = False) -> None:
        """Stop ``name`` (SIGTERM, or SIGKILL with ``kill``) if it runs, start it again with the same environment
        and ports, and wait for it where that can be seen from outside (a webapp's health, chatd, the broker)."""
        proc = self.proc(name)
        if kill:
            proc.kill()
        else:
            await proc.terminate(STOP_TIMEOUT_S)
        if name == "mosquitto":
            await self._prepare_broker()
        proc.start()
        if name == "mosquitto":
            await self.wait_port(name, self.ports["mqtt"])
        elif name == "chatd":
            await self.wait_http(name, f"{self.admin_url}/admin/health", (200,))
        elif name in self._by_name and self._by_name[name].role is Role.WEBAPP:
            await self.wait_http(name, f"https://127.0.0.1:{self.ports[name]}/v1/health", HEALTH_OK)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.alive()

    def pid(self, name: str) -> int | None:
        """The process id of ``name`` (``None`` before it was started)."""
        proc = self.procs.get(name)
        return proc.pid if proc is not None else None

    # --- observation -------------------------------------------------------------------------------------

    async def health(self, webapp: str | None = None) -> tuple[int, Any]:
        """``GET /v1/health`` on ``webapp`` (default the first) with the cluster's API key: (status, body)."""
        name = webapp or self.names(Role.WEBAPP)[0]
        url = f"https://127.0.0.1:{self.ports[name]}/v1/health"
        headers = {"Authorization": f"Apikey {self.api_key}"}
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url, headers=headers, ssl=False) as resp,
        ):
            return resp.status, await resp.json(content_type=None)

    async def roles(self, webapp: str | None = None) -> dict[str, str]:
        """Node id -> role (``primary_master``, ``secondary_master``, ``coreapp``) as ``/v1/health`` reports them
        (empty when it does not answer 200 or lists no roles)."""
        status, body = await self.health(webapp)
        entries = body.get("health", {}) if status == 200 and isinstance(body, dict) else {}
        if not isinstance(entries, dict):
            return {}
        return {
            str(node): str(info["role"]) for node, info in entries.items() if isinstance(info, dict) and "role" in info
        }

    def logs(self, lines: int = 60) -> str:
        """The tail of every process's log (one-shot commands included), for a failure message."""
        return "\n".join(f"----- {p.name} ({p.log_path}) -----\n{p.tail(lines)}" for p in self.procs.values())
