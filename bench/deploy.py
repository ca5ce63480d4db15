"""The deployment under test: the e2e harness's processes plus a private broker and the webhook receiver.

``--backend mariadb|postgres`` runs webapp, coreapp and chatd as separate processes with a private Mosquitto
(``set_tcp_nodelay true``); ``embedded`` runs ``python -m openprem run --no-sandbox`` (SQLite, in-process bus)
beside chatd.  Receipts come at once (``WA_SANDBOX_RECEIPT_DELAY=0``) and every phone has ``auto_read`` off, so
each message costs one ``delivered`` status and no ``read``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.procstat import Watch, fixed, pidof, pids_by_comm
from shared.config import DbSettings
from tests.e2e.harness import Deployment, Proc
from tests.ha.harness import Multiconnect
from tests.support.mosquitto import PrivateMosquitto
from tests.support.ports import free_port
from tests.support.services import db_settings_for, drop_database, mariadb_server, postgres_server

REPO = Path(__file__).resolve().parent.parent
BUSINESS_CC, BUSINESS_NUMBER = "1", "2025550100"
BUSINESS_WA_ID = BUSINESS_CC + BUSINESS_NUMBER
PASSWORD = "Bench!pass-1"
BACKENDS = ("mariadb", "postgres", "embedded")


class BenchError(RuntimeError):
    """The deployment could not be set up; the message says what and where the logs are."""


def phone_ids(count: int) -> list[str]:
    return [f"1555{i:07d}" for i in range(count)]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def bench_env() -> dict[str, str]:
    """Environment for our helper processes (receiver, floor): the repository on the path, no WA_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def wait_http(url: str, what: str, proc: Proc, timeout_s: float = 60.0, ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise BenchError(f"{what} exited at start; see {proc.log_path}\n{proc.tail(30)}")
            try:
                async with session.get(url, ssl=False) as resp:
                    if resp.status in ok:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise BenchError(f"{what} did not answer at {url} within {timeout_s:.0f}s; see {proc.log_path}")


class BenchDeployment:
    """Start, prepare (login, register, webhook, phones), observe and stop one OpenPrem install."""

    def __init__(self, backend: str, workdir: Path, log_level: str, *, shards: int = 0) -> None:
        """``shards``: multiconnect with one master and that many coreapps, one per shard (0: one coreapp)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}")
        if shards and backend == "embedded":
            raise ValueError("multiconnect needs MariaDB or PostgreSQL")
        self.shards = shards
        self.backend = backend
        self.workdir = workdir
        self.log_level = log_level
        self.broker: PrivateMosquitto | None = None
        self.db: DbSettings | None = None
        self.dep: Deployment | None = None
        self.receiver: Proc | None = None
        self.receiver_port = free_port()
        self.token = ""
        self.watch = Watch()

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def web_url(self) -> str:
        assert self.dep is not None
        return self.dep.web_url

    def app_pids(self) -> dict[str, int]:
        """Our own Python processes (for the profiler): name -> pid."""
        assert self.dep is not None
        return {n: p.popen.pid for n, p in self.dep.procs.items() if p.popen is not None and p.alive()}

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.backend == "mariadb":
            host, port, _, _ = mariadb_server()
            if not _reachable(host, port):
                raise BenchError(f"MariaDB is not reachable at {host}:{port} (WA_TEST_MARIADB_HOST/_PORT)")
            self.db = db_settings_for("mariadb", self.workdir, prefix="bench_")
            self.watch.add("mariadbd", lambda: pidof("mariadbd", "mysqld"), shared=True)
        elif self.backend == "postgres":
            host, port, _, _ = postgres_server()
            if not _reachable(host, port):
                raise BenchError(f"PostgreSQL is not reachable at {host}:{port} (WA_TEST_PG_HOST/_PORT)")
            self.db = db_settings_for("postgres", self.workdir, prefix="bench_")
            self.watch.add("postgres", lambda: pids_by_comm("postgres"), shared=True)
        else:
            self.db = db_settings_for("sqlite", self.workdir / "deploy")
        await drop_database(self.db)  # a run killed earlier may have left it
        mqtt_port = None
        if self.backend != "embedded":
            self.broker = PrivateMosquitto.authenticated(self.workdir / "mosquitto")
            self.broker.start()
            mqtt_port = self.broker.port
            broker_proc = self.broker._proc  # the test helper keeps its Popen private; we only read the pid
            self.watch.add("mosquitto", fixed(broker_proc.pid if broker_proc else None))
        extra = {
            "WA_SANDBOX_RECEIPT_DELAY": "0",
            "WA_SANDBOX_READ_DELAY": "3600",  # belt and braces: auto_read is off on every phone anyway
            # The simulated network's own history, kept small so a soak measures the product, not the sandbox's
            # inboxes (the bench never reads them); 20,000 ids still covers every resend of a run.
            "WA_SANDBOX_INBOX_LIMIT": "5",
            "WA_SANDBOX_SEEN_LIMIT": "20000",
            "WA_LOG_LEVEL": self.log_level,
        }
        users = self.broker.users if self.broker is not None else {}
        if self.shards:
            extra["WA_KEYSTORE_KEY"] = base64.b64encode(os.urandom(32)).decode()
            self.dep = Multiconnect(
                self.workdir / "deploy", self.db, mqtt_port, extra, mqtt_users=users, masters=1, coreapps=self.shards
            )
        else:
            self.dep = Deployment(self.workdir / "deploy", self.db, mqtt_port, extra, mqtt_users=users)
        try:
            await self.dep.start()
        except AssertionError as exc:
            raise BenchError(f"the deployment did not start: {exc}") from None
        for name, proc in self.dep.procs.items():
            self.watch.add(name, fixed(proc.popen.pid if proc.popen else None))
        self.receiver = Proc(
            "receiver",
            [sys.executable, "-m", "bench.receiver", "--port", str(self.receiver_port)],
            bench_env(),
            self.workdir / "receiver.out",
        )
        self.receiver.start()
        await wait_http(self.receiver_url + "/progress", "the webhook receiver", self.receiver)
        self.watch.add("receiver", fixed(self.receiver.popen.pid if self.receiver.popen else None))
        self.watch.add("bench client", fixed(os.getpid()))

    async def stop(self) -> None:
        if self.dep is not None:
            await self.dep.stop()
        if self.receiver is not None:
            self.receiver.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.db is not None:
            try:
                await drop_database(self.db)
            except Exception as exc:  # cleanup must not hide the results
                print(f"bench: could not drop {self.db.database}: {exc}", file=sys.stderr)

    # --- preparation ------------------------------------------------------------------------------------

    async def _call(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None, basic: bool = False
    ) -> tuple[int, dict[str, Any]]:
        assert self.dep is not None
        if basic:
            headers = {"Authorization": aiohttp.BasicAuth("admin", "secret").encode()}
        else:
            headers = {"Authorization": f"Bearer {self.token}"}
        async with session.request(method, self.web_url + path, json=body, headers=headers, ssl=False) as resp:
            return resp.status, await resp.json(content_type=None)

    async def _admin(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        assert self.dep is not None
        async with session.request(method, self.dep.admin_url + path, json=body) as resp:
            return resp.status, await resp.json(content_type=None)

    async def prepare(self, phones: list[str]) -> dict[str, float]:
        """Log in, register and verify the number, point webhooks at the receiver, create the phones.

        Returns how long each step took (seconds).
        """
        timings: dict[str, float] = {}
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            t0 = time.monotonic()
            status, body = await self._call(session, "POST", "/v1/users/login", {"new_password": PASSWORD}, True)
            _expect(status == 200, "login", status, body)
            self.token = body["users"][0]["token"]
            status, body = await self._admin(
                session,
                "POST",
                "/admin/certificates",
                {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "vname": "OpenPrem Bench"},
            )
            _expect(status in (200, 201), "certificate", status, body)
            register = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "method": "sms", "cert": body["cert"]}
            status, body = await self._call(session, "POST", "/v1/account", register)
            _expect(status == 202, "register", status, body)
            status, body = await self._admin(session, "GET", f"/admin/codes/{BUSINESS_WA_ID}")
            _expect(status == 200, "code", status, body)
            status, body = await self._call(session, "POST", "/v1/account/verify", {"code": body["code"]})
            _expect(status in (200, 201), "verify", status, body)
            if self.shards > 1:
                shards = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "shards": self.shards}
                status, body = await self._call(session, "POST", "/v1/account/shards", shards)
                _expect(status == 201, "shards", status, body)
            deadline = time.monotonic() + 60
            while True:
                _, body = await self._call(session, "GET", "/v1/health")
                if self._connected(body.get("health", {})):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"gateway not connected after 60s: {body}")
                await asyncio.sleep(0.2)
            patch = {"webhooks": {"url": self.receiver_url + "/webhook"}, "sent_status": False}
            status, body = await self._call(session, "PATCH", "/v1/settings/application", patch)
            _expect(status == 200, "webhook settings", status, body)
            timings["register_s"] = time.monotonic() - t0

            t0 = time.monotonic()
            gate = asyncio.Semaphore(32)

            async def create(wa_id: str) -> None:
                async with gate:
                    status, body = await self._admin(session, "POST", "/admin/phones", {"wa_id": wa_id})
                    _expect(status in (200, 201, 409), f"create phone {wa_id}", status, body)
                    status, body = await self._admin(session, "PATCH", f"/admin/phones/{wa_id}", {"auto_read": False})
                    _expect(status == 200, f"auto_read off on {wa_id}", status, body)

            await asyncio.gather(*(create(p) for p in phones))
            timings["phones_s"] = time.monotonic() - t0
        return timings

    def _connected(self, health: dict[str, Any]) -> bool:
        if not self.shards:
            return bool(health.get("gateway_status") == "connected")
        owners = [n for n in health.values() if n.get("role") == "coreapp" and n.get("gateway_status") == "connected"]
        return len(owners) == self.shards

    async def progress(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(self.receiver_url + "/progress") as resp:
            return dict(await resp.json())

    async def dump(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(self.receiver_url + "/dump") as resp:
            return dict(await resp.json())

    async def reset_receiver(self, session: aiohttp.ClientSession) -> None:
        async with session.post(self.receiver_url + "/reset") as resp:
            resp.raise_for_status()

    def alive(self) -> list[str]:
        """Names of processes that died (should be empty)."""
        assert self.dep is not None
        return [n for n, p in self.dep.procs.items() if not p.alive()]


def _expect(ok: bool, what: str, status: int, body: Any) -> None:
    if not ok:
        raise BenchError(f"{what} failed: HTTP {status} {str(body)[:300]}")
