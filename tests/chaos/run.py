"""``python -m tests.chaos.run`` (``make chaos``): messages under crashes, drops and restarts; then the invariants.

The split deployment (webapp, coreapp and chatd as OS processes, ``tests/e2e/harness.Deployment``) runs on a
private MariaDB (``tests/chaos/mariadb.py``) and a private Mosquitto, so restarting them touches nothing else on
the machine.  Concurrent clients send ``--messages`` unique texts round-robin to ``--phones`` phones while phones
send ``--inbound`` texts to the business, and a schedule SIGKILLs (and restarts) coreapp, drops the business's
chat connection (chatd admin kick, or a ``drop_after`` fault), restarts Mosquitto and restarts MariaDB.  Each
event fires at a fraction of the accepted messages and waits for the gateway to be connected again before the
next one.  Then it waits (bounded) for the statuses and inbound webhooks and checks, see ``verify``:

* every message id the API handed out is on its phone, exactly once (by body: no second copy under another id,
  retried or not);
* every such id got ``sent``, ``delivered`` and ``read`` webhooks (auto_read is on), first occurrences in that
  order (repeats allowed: webhooks are at least once);
* every inbound message was stored once (coreapp's ``messages`` table) and reached the webhook (distinct ids);
  the same id webhooked twice is reported (allowed after a crash: at-least-once), not a failure.

A call that failed (503, connection reset, timeout) is retried until it gets an id, with the same
``Idempotency-Key`` each time: an attempt stored although its answer was lost is answered again on the retry, so no
body reaches a phone twice or is stored twice ("retry duplicates" are a violation; before the key they were 5 in
10,000, see tests/chaos/results/example.md).
With ``--ha`` (``make chaos CHAOS_ARGS=--ha``) the deployment is multiconnect (``tests/ha/harness.Multiconnect``: two
masters, ``--shards`` shards on shards + 1 coreapps, all on the same MariaDB and broker): a kill hits a shard's
current owner (a standby takes over, the victim restarts as a standby), ``--master-kills`` (1) SIGKILL the primary
master, and "connected" means every shard has a connected owner; the invariants are the same.
Writes ``tests/chaos/results/<timestamp>.{json,md}``.  Exit 0: all invariants hold; 1: a violation; 2: set-up.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shared.config import DbEngine, DbSettings
from shared.progress import Progress, count
from tests.chaos.mariadb import PrivateMariaDB
from tests.e2e.harness import Deployment, free_port
from tests.ha.harness import Multiconnect
from tests.support.mosquitto import PrivateMosquitto

RESULTS = Path(__file__).resolve().parent / "results"
BUSINESS_CC, BUSINESS_NUMBER = "1", "2025550100"
BUSINESS_WA_ID = BUSINESS_CC + BUSINESS_NUMBER
PASSWORD = "Chaos!pass-1"
DB_PREFIX = "chaos_"
LADDER = ("sent", "delivered", "read")


class SetupError(RuntimeError):
    """The deployment could not be brought up."""


@dataclass
class ChaosConfig:
    messages: int = 10_000
    phones: int = 100
    inbound: int | None = None  # default: messages // 20
    concurrency: int = 32
    core_kills: int = 3
    drops: int = 5
    mqtt_restarts: int = 1
    db_restarts: int = 1
    recover_timeout_s: float = 120.0  # per chaos event: the gateway connected again
    message_deadline_s: float = 300.0  # a client gives up on one message after this long
    drain_timeout_s: float = 600.0
    stall_timeout_s: float = 120.0  # stop draining when nothing arrived for this long
    log_level: str = "INFO"
    warmup: bool = True  # one message to each phone (read) before the load: opens every Signal session first
    ha: bool = False  # multiconnect: 2 masters, `shards` shards on shards + 1 coreapps; kills hit shard owners
    shards: int = 2
    master_kills: int = 0  # HA only: SIGKILL of the primary master (restarted as a secondary)

    @property
    def inbound_count(self) -> int:
        return self.messages // 20 if self.inbound is None else self.inbound


def phone_ids(count: int) -> list[str]:
    return [f"1555{i:07d}" for i in range(count)]


# --- the webhook receiver --------------------------------------------------------------------------------------


class Receiver:
    """Records every webhook in arrival order (one global sequence number) and answers 200."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seq = 0
        self.statuses: list[tuple[int, str, str]] = []  # (seq, message id, status)
        self.inbound: list[tuple[int, str, str, str]] = []  # (seq, message id, from, body)
        self.errors: list[dict[str, Any]] = []
        self.event_ids: Counter[str] = Counter()
        self.posts = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/webhook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.posts += 1
        event_id = request.headers.get("X-OpenPrem-Event-Id")
        if event_id:
            self.event_ids[event_id] += 1
        for status in body.get("statuses") or []:
            self.seq += 1
            self.statuses.append((self.seq, str(status.get("id")), str(status.get("status"))))
        for message in body.get("messages") or []:
            self.seq += 1
            text = (message.get("text") or {}).get("body", "")
            self.inbound.append((self.seq, str(message.get("id")), str(message.get("from")), str(text)))
        for error in body.get("errors") or []:
            self.errors.append(error)
        return web.Response(status=200)

    def status_ids(self, status: str) -> set[str]:
        return {i for _, i, s in self.statuses if s == status}


# --- the send side ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    to: str
    body: str
    message_id: str | None = None
    attempts: int = 0
    failures: list[str] = field(default_factory=list)  # why each failed attempt failed
    seconds: float = 0.0


@dataclass
class ChaosEvent:
    kind: str
    detail: str
    at_s: float  # since the start of the send phase
    accepted_at_trigger: int
    recovered_s: float | None = None  # until the gateway was connected again (None: it was not)
    note: str = ""


class Run:
    def __init__(self, cfg: ChaosConfig, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.phones = phone_ids(cfg.phones)
        self.db_server = PrivateMariaDB(workdir / "mariadb")
        self.broker: PrivateMosquitto | None = None
        self.dep: Deployment | None = None
        self.receiver = Receiver()
        self.token = ""
        self.outcomes: list[Outcome] = []
        self.inbound_sent: list[tuple[str, str, str]] = []  # (chatd id, phone, body)
        self.inbound_failures: list[str] = []
        self.events: list[ChaosEvent] = []
        self.accepted = 0
        self.t0 = 0.0
        self.timings: dict[str, float] = {}
        self.warm_ids: set[str] = set()
        self.progress = Progress("chaos")  # a line on a terminal only (shared.progress)

    # --- deployment ---------------------------------------------------------------------------------------

    @property
    def db_settings(self) -> DbSettings:
        return DbSettings(
            engine=DbEngine.MYSQL,
            hostname=self.db_server.host,
            port=self.db_server.port,
            username=self.db_server.user,
            password=self.db_server.password,
            name_prefix=DB_PREFIX,
        )

    async def start(self) -> None:
        started = time.monotonic()
        try:
            await asyncio.to_thread(self.db_server.start)
            self.broker = PrivateMosquitto.authenticated(self.workdir / "mosquitto")
            self.broker.start()
        except RuntimeError as exc:
            raise SetupError(str(exc)) from None
        extra = {"WA_LOG_LEVEL": self.cfg.log_level, "WA_SANDBOX_RECEIPT_DELAY": "0.05", "WA_SANDBOX_READ_DELAY": "0.1"}
        if self.cfg.ha:
            extra["WA_KEYSTORE_KEY"] = base64.b64encode(os.urandom(32)).decode()
            self.dep = Multiconnect(
                self.workdir / "deploy",
                self.db_settings,
                self.broker.port,
                extra,
                mqtt_users=self.broker.users,
                masters=2,
                coreapps=self.cfg.shards + 1,
            )
        else:
            self.dep = Deployment(
                self.workdir / "deploy", self.db_settings, self.broker.port, extra, mqtt_users=self.broker.users
            )
        try:
            await self.dep.start()
        except AssertionError as exc:
            raise SetupError(f"the deployment did not start: {exc}") from None
        await self.receiver.start()
        self.timings["start_s"] = time.monotonic() - started

    async def stop(self) -> None:
        await self.receiver.stop()
        if self.dep is not None:
            await self.dep.stop()
        if self.broker is not None:
            self.broker.stop()
        await asyncio.to_thread(self.db_server.stop)

    async def _api(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None, basic: bool = False
    ) -> tuple[int, dict[str, Any]]:
        assert self.dep is not None
        if basic:
            headers = {"Authorization": aiohttp.encode_basic_auth("admin", "secret")}
        else:
            headers = {"Authorization": f"Bearer {self.token}"}
        async with session.request(method, self.dep.web_url + path, json=body, headers=headers, ssl=False) as resp:
            return resp.status, await resp.json(content_type=None)

    async def _admin(
        self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None
    ) -> tuple[int, dict[str, Any]]:
        assert self.dep is not None
        async with session.request(method, self.dep.admin_url + path, json=body) as resp:
            return resp.status, await resp.json(content_type=None)

    async def prepare(self) -> None:
        """Log in, register + verify, webhooks with sent_status, the phones (auto_read on: read comes)."""
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            status, body = await self._api(s, "POST", "/v1/users/login", {"new_password": PASSWORD}, basic=True)
            _expect(status == 200, "login", status, body)
            self.token = body["users"][0]["token"]
            cert_req = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "vname": "OpenPrem Chaos"}
            status, body = await self._admin(s, "POST", "/admin/certificates", cert_req)
            _expect(status in (200, 201), "certificate", status, body)
            register = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "method": "sms", "cert": body["cert"]}
            status, body = await self._api(s, "POST", "/v1/account", register)
            _expect(status == 202, "register", status, body)
            status, body = await self._admin(s, "GET", f"/admin/codes/{BUSINESS_WA_ID}")
            _expect(status == 200, "code", status, body)
            status, body = await self._api(s, "POST", "/v1/account/verify", {"code": body["code"]})
            _expect(status in (200, 201), "verify", status, body)
            if self.cfg.ha and self.cfg.shards != 1:
                shards = {"cc": BUSINESS_CC, "phone_number": BUSINESS_NUMBER, "shards": self.cfg.shards}
                status, body = await self._api(s, "POST", "/v1/account/shards", shards)
                _expect(status == 201, "shards", status, body)
            if await self.wait_connected(s, 60) is None:
                raise SetupError("the gateway did not connect within 60 s after registration")
            patch = {"webhooks": {"url": self.receiver.url}, "sent_status": True}
            status, body = await self._api(s, "PATCH", "/v1/settings/application", patch)
            _expect(status == 200, "webhook settings", status, body)
            gate = asyncio.Semaphore(16)

            async def create(wa_id: str) -> None:
                async with gate:
                    status, body = await self._admin(s, "POST", "/admin/phones", {"wa_id": wa_id, "name": wa_id})
                    _expect(status in (200, 201, 409), f"phone {wa_id}", status, body)
                    status, body = await self._admin(s, "PATCH", f"/admin/phones/{wa_id}", {"auto_read": True})
                    _expect(status == 200, f"auto_read on {wa_id}", status, body)

            await asyncio.gather(*(create(p) for p in self.phones))
        self.timings["prepare_s"] = time.monotonic() - started

    async def wait_connected(self, session: aiohttp.ClientSession, timeout_s: float) -> float | None:
        """Seconds until ``/v1/health`` says the gateway is connected, or None after ``timeout_s``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
                _, body = await self._api(session, "GET", "/v1/health")
                if self._connected(body.get("health", {})):
                    return time.monotonic() - started
            await asyncio.sleep(0.2)
        return None

    def _connected(self, health: dict[str, Any]) -> bool:
        """Single coreapp: its gateway; HA: every shard has a connected owner."""
        if not self.cfg.ha:
            return bool(health.get("gateway_status") == "connected")
        return len(self._owners(health)) == self.cfg.shards

    @staticmethod
    def _owners(health: dict[str, Any]) -> list[str]:
        return [
            name
            for name, node in health.items()
            if isinstance(node, dict) and node.get("role") == "coreapp" and node.get("gateway_status") == "connected"
        ]

    async def _kill_role(self, s: aiohttp.ClientSession, kind: str) -> str:
        """HA: SIGKILL a shard's owner or the primary master, then start it again (it comes back as a standby)."""
        assert isinstance(self.dep, Multiconnect)
        _, body = await self._api(s, "GET", "/v1/health")
        health = body.get("health", {})
        if kind == "master_kill":
            victims = [n for n, node in health.items() if node.get("role") == "primary_master"]
        else:
            victims = self._owners(health)
        if not victims:
            return f"{kind}: no victim found in {health}"
        victim = random.choice(victims)
        self.dep.proc(victim).kill()
        await asyncio.sleep(0.5)
        self.dep.proc(victim).start()
        return f"SIGKILL {victim} ({'primary master' if kind == 'master_kill' else 'shard owner'}), restarted"

    async def warm_up(self) -> None:
        """One message to every phone, waited for until read, before any inbound or chaos.

        Without it a phone whose first message to the business crosses the business's first message to it
        (both sides open a Signal session at once) can never decrypt the business again: a product bug found by
        this run (tests/chaos/README.md, "Findings"); ``--no-warmup`` reproduces it.
        """
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            for k, phone in enumerate(self.phones):
                body = {"to": phone, "type": "text", "text": {"body": f"chaos {self.run_id} warm {k}"}}
                status, doc = await self._api(s, "POST", "/v1/messages", body)
                _expect(status in (200, 201), f"warm-up message to {phone}", status, doc)
                self.warm_ids.add(str(doc["messages"][0]["id"]))
        deadline = time.monotonic() + 120
        while not self.warm_ids <= self.receiver.status_ids("read"):
            if time.monotonic() > deadline:
                missing = len(self.warm_ids - self.receiver.status_ids("read"))
                raise SetupError(f"{missing} warm-up message(s) not read within 120 s")
            await asyncio.sleep(0.2)
        self.timings["warmup_s"] = time.monotonic() - started

    # --- the load -----------------------------------------------------------------------------------------

    def progress_line(self) -> str:
        """``sent 4,200/10,000  delivered 4,100  read 4,000  …``: accepted sends, and the ids with such webhooks."""
        delivered = len(self.receiver.status_ids("delivered") - self.warm_ids)  # the warm-up's are not the load's
        read = len(self.receiver.status_ids("read") - self.warm_ids)
        return (
            f"sent {count(self.accepted)}/{count(self.cfg.messages)}  delivered {count(delivered)}  "
            f"read {count(read)}  inbound {count(len(self.receiver.inbound))}  faults {len(self.events)}"
        )

    async def send_all(self) -> None:
        assert self.dep is not None
        url = self.dep.web_url + "/v1/messages"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        next_index = 0
        n = self.cfg.messages

        async def one(session: aiohttp.ClientSession, i: int) -> Outcome:
            to = self.phones[i % len(self.phones)]
            out = Outcome(i, to, f"chaos {self.run_id} out {i:06d}")
            payload = json.dumps({"to": to, "type": "text", "text": {"body": out.body}}).encode()
            keyed = {**headers, "Idempotency-Key": f"chaos-{self.run_id}-{i:06d}"}  # one key for every attempt
            started = time.monotonic()
            while True:
                out.attempts += 1
                try:
                    async with session.post(url, data=payload, headers=keyed) as resp:
                        raw, status = await resp.read(), resp.status
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raw, status = type(exc).__name__.encode(), 0
                if status in (200, 201):
                    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                        out.message_id = str(json.loads(raw)["messages"][0]["id"])
                        self.accepted += 1
                        break
                out.failures.append(f"{status} {_error_code(raw)}")
                if time.monotonic() - started > self.cfg.message_deadline_s:
                    break
                await asyncio.sleep(min(0.25 * out.attempts, 2.0))
            out.seconds = time.monotonic() - started
            return out

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal next_index
            while next_index < n:
                i = next_index
                next_index += 1
                self.outcomes.append(await one(session, i))

        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=self.cfg.concurrency, ssl=False)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(worker(session) for _ in range(self.cfg.concurrency)))

    async def send_inbound(self) -> None:
        """Phones write to the business, spread over the send phase (one every messages/inbound accepted)."""
        m = self.cfg.inbound_count
        if m == 0:
            return
        step = max(1, self.cfg.messages // m)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            for j in range(m):
                while self.accepted < min(j * step, self.cfg.messages - 1) and not self._sending_done:
                    await asyncio.sleep(0.05)
                phone = self.phones[(j * 7) % len(self.phones)]
                body = f"chaos {self.run_id} in {j:06d}"
                for attempt in range(20):
                    try:
                        status, doc = await self._admin(
                            s,
                            "POST",
                            f"/admin/phones/{phone}/send",
                            {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": body}},
                        )
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        status, doc = 0, {"error": type(exc).__name__}
                    if status == 200 and doc.get("id"):
                        self.inbound_sent.append((str(doc["id"]), phone, body))
                        break
                    self.inbound_failures.append(f"{body}: {status} {doc}")
                    await asyncio.sleep(0.5 * (attempt + 1))

    # --- the chaos ----------------------------------------------------------------------------------------

    def schedule(self) -> list[str]:
        """Event kinds, interleaved: kills and drops spread out, the broker and the database in between."""
        kinds = ["core_kill"] * self.cfg.core_kills + ["drop"] * self.cfg.drops
        # interleave kills and drops evenly
        kills = [k for k in kinds if k == "core_kill"]
        drops = [k for k in kinds if k == "drop"]
        mixed: list[str] = []
        while kills or drops:
            if drops:
                mixed.append(drops.pop())
            if kills:
                mixed.append(kills.pop())
        extras = ["mqtt_restart"] * self.cfg.mqtt_restarts + ["db_restart"] * self.cfg.db_restarts
        if self.cfg.ha:
            extras += ["master_kill"] * self.cfg.master_kills
        for j, extra in enumerate(extras):  # at roughly 1/3, 2/3, ... of the schedule
            mixed.insert(min(len(mixed), (j + 1) * len(mixed) // (len(extras) + 1) + j), extra)
        return mixed

    async def chaos(self) -> None:
        assert self.dep is not None and self.broker is not None
        kinds = self.schedule()
        drops_done = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
            for k, kind in enumerate(kinds):
                threshold = (k + 1) * self.cfg.messages // (len(kinds) + 1)
                while self.accepted < threshold and not self._sending_done:
                    await asyncio.sleep(0.05)
                event = ChaosEvent(kind, "", time.monotonic() - self.t0, self.accepted)
                if self.cfg.ha and kind in ("core_kill", "master_kill"):
                    event.detail = await self._kill_role(s, kind)
                elif kind == "core_kill":
                    self.dep.core_proc.kill()
                    event.detail = "SIGKILL coreapp, restarted at once"
                    await asyncio.sleep(0.5)
                    await self.dep.restart_core()
                elif kind == "drop":
                    drops_done += 1
                    if drops_done % 2 == 0:
                        event.detail, event.note = await self._drop_after(s)
                    else:
                        status, body = await self._admin(s, "POST", f"/admin/businesses/{BUSINESS_WA_ID}/kick")
                        event.detail = "chatd admin kick"
                        event.note = "" if status == 200 else f"kick answered {status} {body}"
                elif kind == "mqtt_restart":
                    await asyncio.to_thread(self.broker.restart)
                    event.detail = "Mosquitto SIGTERM + start on the same port"
                elif kind == "db_restart":
                    await asyncio.to_thread(self.db_server.restart)
                    event.detail = "private MariaDB SIGTERM + start on the same port"
                recovered = await self.wait_connected(s, self.cfg.recover_timeout_s)
                event.recovered_s = None if recovered is None else round(recovered, 2)
                self.events.append(event)
                self.progress.clear()
                print(
                    f"chaos: {event.at_s:7.1f}s {kind:13} accepted={event.accepted_at_trigger:6} "
                    f"recovered={event.recovered_s} {event.note}",
                    flush=True,
                )
                await asyncio.sleep(1.0)

    async def _drop_after(self, s: aiohttp.ClientSession) -> tuple[str, str]:
        """A ``drop_after`` fault until the connection is seen dropped (or 15 s), then cleared."""
        frames = 50
        status, body = await self._admin(s, "POST", "/admin/faults", {"kind": "drop_after", "frames": frames})
        if status not in (200, 201):
            return f"drop_after frames={frames}", f"fault refused: {status} {body}"
        seen = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            _, doc = await self._admin(s, "GET", "/admin/businesses")
            if not any(b.get("connected") for b in doc.get("businesses", []) if b.get("wa_id") == BUSINESS_WA_ID):
                seen = True
                break
            await asyncio.sleep(0.01)
        await self._admin(s, "DELETE", "/admin/faults")
        return f"chatd fault drop_after frames={frames}", "" if seen else "drop not observed within 15 s"

    # --- the whole run ------------------------------------------------------------------------------------

    _sending_done = False

    async def load_phase(self) -> None:
        self.t0 = time.monotonic()
        chaos = asyncio.create_task(self.chaos())
        inbound = asyncio.create_task(self.send_inbound())
        await self.send_all()
        self._sending_done = True
        self.timings["send_s"] = time.monotonic() - self.t0
        await chaos
        await inbound
        self.timings["chaos_and_send_s"] = time.monotonic() - self.t0

    async def drain(self) -> None:
        """Wait for every held id's ``read`` and every inbound message's webhook (bounded, stall-aware)."""
        started = time.monotonic()
        held = {o.message_id for o in self.outcomes if o.message_id}
        inbound = {i for i, _, _ in self.inbound_sent}
        last, last_change = -1, time.monotonic()
        while True:
            done = len(held & self.receiver.status_ids("read")) + len(
                inbound & {i for _, i, _, _ in self.receiver.inbound}
            )
            now = time.monotonic()
            if done >= len(held) + len(inbound) or now - started > self.cfg.drain_timeout_s:
                break
            if done != last:
                last, last_change = done, now
            elif now - last_change > self.cfg.stall_timeout_s:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # stragglers: a repeated webhook right behind the last one
        self.timings["drain_s"] = time.monotonic() - started

    async def inboxes(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
            for phone in self.phones:
                status, body = await self._admin(s, "GET", f"/admin/phones/{phone}/inbox")
                _expect(status == 200, f"inbox {phone}", status, body)
                out[phone] = list(body["messages"])
        return out

    def stored_rows(self) -> list[tuple[str, str, str]]:
        """coreapp's ``messages`` rows: (id, direction, our body found in content or "")."""
        rows = self.db_server.query("SELECT id, direction, content FROM messages", f"{DB_PREFIX}openprem")
        pattern = re.compile(rf"chaos {self.run_id} (?:out|in) \d+")
        found = []
        for row in rows:
            match = pattern.search(row[2] if len(row) > 2 else "")
            found.append((row[0], row[1], match.group(0) if match else ""))
        return found


def _error_code(raw: bytes) -> str:
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError, AttributeError):
        return str(json.loads(raw)["errors"][0]["code"])
    return raw[:40].decode(errors="replace")


def _expect(ok: bool, what: str, status: int, body: Any) -> None:
    if not ok:
        raise SetupError(f"{what} failed: HTTP {status} {str(body)[:300]}")


# --- the verdict -----------------------------------------------------------------------------------------------


def verify(run: Run, inboxes: dict[str, list[dict[str, Any]]], rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    outcomes = sorted(run.outcomes, key=lambda o: o.index)
    held = [o for o in outcomes if o.message_id]
    never = [o for o in outcomes if not o.message_id]
    retried = [o for o in outcomes if o.attempts > 1]

    # Phones: what each received from the business, by id and by body.
    on_phone: dict[str, tuple[str, str]] = {}  # id -> (phone, body)
    body_count: Counter[str] = Counter()
    foreign = 0
    for phone, messages in inboxes.items():
        for m in messages:
            body = str((m.get("text") or {}).get("body", ""))
            if f"chaos {run.run_id} warm " in body:
                continue
            if f"chaos {run.run_id} out " not in body:
                foreign += 1
                continue
            on_phone[str(m["id"])] = (phone, body)
            body_count[body] += 1
    missing = [o for o in held if o.message_id not in on_phone]
    wrong = [o for o in held if o.message_id in on_phone and on_phone[o.message_id] != (o.to, o.body)]
    dup_held = [o for o in held if body_count[o.body] > 1 and o.attempts == 1]
    dup_retry = [o for o in held if body_count[o.body] > 1 and o.attempts > 1]
    never_but_delivered = [o for o in never if body_count[o.body] > 0]
    never_twice = [o for o in never if body_count[o.body] > 1]
    held_ids = {o.message_id for o in held if o.message_id is not None}
    extra_ids_on_phone = [i for i in on_phone if i not in held_ids]

    # Status webhooks.
    first: dict[tuple[str, str], int] = {}
    per_status: Counter[str] = Counter()
    repeats: Counter[str] = Counter()
    for seq, mid, status in run.receiver.statuses:
        if mid in run.warm_ids:
            continue
        per_status[status] += 1
        if (mid, status) in first:
            repeats[status] += 1
        else:
            first[(mid, status)] = seq
    missing_status = {s: sorted(i for i in held_ids if (i, s) not in first) for s in LADDER}
    out_of_order = []
    for mid in held_ids:
        seqs = [(s, first[(mid, s)]) for s in LADDER if (mid, s) in first]
        if any(a[1] > b[1] for a, b in itertools.pairwise(seqs)):
            out_of_order.append({"id": mid, "first_seq": dict(seqs)})
    failed_ids = sorted({mid for _, mid, s in run.receiver.statuses if s == "failed" and mid not in run.warm_ids})
    statuses_for_unheld = len({mid for _, mid, _ in run.receiver.statuses} - held_ids - run.warm_ids)

    # Inbound: webhooks and storage.
    sent_in = {i: body for i, _, body in run.inbound_sent}
    hook_ids: Counter[str] = Counter(i for _, i, _, _ in run.receiver.inbound)
    hook_bodies: Counter[str] = Counter(b for _, _, _, b in run.receiver.inbound)
    in_missing_hook = sorted(set(sent_in) - set(hook_ids))
    in_redelivered = {i: c for i, c in hook_ids.items() if c > 1}
    in_body_twice = sorted(
        b for b, c in hook_bodies.items() if c > 1 and len({i for _, i, _, bb in run.receiver.inbound if bb == b}) > 1
    )
    stored_in = [r for r in rows if r[1] == "in"]
    stored_in_ids: Counter[str] = Counter(r[0] for r in stored_in)
    stored_in_bodies: Counter[str] = Counter(r[2] for r in stored_in if r[2])
    in_missing_store = sorted(set(sent_in) - set(stored_in_ids))
    in_stored_twice = sorted(
        {i for i, c in stored_in_ids.items() if c > 1} | {b for b, c in stored_in_bodies.items() if c > 1}
    )
    stored_out = [r for r in rows if r[1] == "out"]
    stored_out_bodies: Counter[str] = Counter(r[2] for r in stored_out if r[2])

    failures_by_kind: Counter[str] = Counter(f for o in outcomes for f in o.failures)
    violations: list[str] = []
    if never:
        violations.append(f"{len(never)} message(s) never got an id within {run.cfg.message_deadline_s:.0f}s")
    if missing:
        violations.append(f"{len(missing)} held id(s) not on their phone")
    if wrong:
        violations.append(f"{len(wrong)} held id(s) on the wrong phone or with another body")
    if dup_held:
        violations.append(f"{len(dup_held)} message(s) sent in one attempt reached the phone more than once")
    if dup_retry:
        violations.append(f"{len(dup_retry)} retried message(s) reached the phone more than once")
    bodies_stored_twice = sum(1 for c in stored_out_bodies.values() if c > 1)
    if bodies_stored_twice:
        violations.append(f"{bodies_stored_twice} outbound bod(y/ies) stored more than once")
    if never_twice:
        violations.append(f"{len(never_twice)} message(s) without an id reached the phone more than once")
    for s in LADDER:
        if missing_status[s]:
            violations.append(f"{len(missing_status[s])} held id(s) without a '{s}' webhook")
    if out_of_order:
        violations.append(f"{len(out_of_order)} message(s) with statuses out of ladder order")
    if failed_ids:
        violations.append(f"{len(failed_ids)} message(s) reported 'failed'")
    if len(run.inbound_sent) < run.cfg.inbound_count:
        violations.append(f"only {len(run.inbound_sent)} of {run.cfg.inbound_count} inbound messages were sent")
    if in_missing_hook:
        violations.append(f"{len(in_missing_hook)} inbound message(s) never reached the webhook")
    if in_body_twice:
        violations.append(f"{len(in_body_twice)} inbound message(s) webhooked twice under different ids")
    if in_missing_store:
        violations.append(f"{len(in_missing_store)} inbound message(s) not stored")
    if in_stored_twice:
        violations.append(f"{len(in_stored_twice)} inbound message(s) stored twice")
    if run.receiver.errors:
        violations.append(f"{len(run.receiver.errors)} error webhook(s)")

    def sample(items: list[Outcome], k: int = 10) -> list[dict[str, Any]]:
        return [
            {"index": o.index, "to": o.to, "id": o.message_id, "attempts": o.attempts, "failures": o.failures[:5]}
            for o in items[:k]
        ]

    return {
        "ok": not violations,
        "violations": violations,
        "outbound": {
            "sent": len(outcomes),
            "accepted_ids": len(held),
            "never_got_id": len(never),
            "retried_calls": len(retried),
            "failed_attempts": sum(len(o.failures) for o in outcomes),
            "failed_attempts_by_kind": dict(failures_by_kind.most_common()),
            "on_phones": len(on_phone),
            "missing_on_phone": len(missing),
            "wrong_phone_or_body": len(wrong),
            "duplicates_on_phone_single_attempt": len(dup_held),
            "retry_duplicates_on_phone": len(dup_retry),
            "no_id_but_delivered": len(never_but_delivered),
            "extra_ids_on_phones": len(extra_ids_on_phone),
            "foreign_messages_on_phones": foreign,
            "stored_outbound_rows": len(stored_out),
            "stored_outbound_bodies_twice": bodies_stored_twice,
            "samples": {
                "missing": sample(missing),
                "dup_single_attempt": sample(dup_held),
                "retry_duplicates": sample(dup_retry),
                "never_got_id": sample(never),
            },
        },
        "statuses": {
            "webhooks_per_status": dict(per_status),
            "distinct_held_ids_per_status": {s: len(held_ids) - len(missing_status[s]) for s in LADDER},
            "missing_per_status": {s: len(missing_status[s]) for s in LADDER},
            "repeated_per_status": dict(repeats),
            "out_of_order": len(out_of_order),
            "out_of_order_samples": out_of_order[:10],
            "failed": len(failed_ids),
            "ids_not_held_with_statuses": statuses_for_unheld,
            "missing_samples": {s: missing_status[s][:10] for s in LADDER},
        },
        "inbound": {
            "sent": len(run.inbound_sent),
            "send_failures": len(run.inbound_failures),
            "stored_rows": len(stored_in),
            "stored_distinct_ids": len(stored_in_ids),
            "missing_in_store": len(in_missing_store),
            "stored_twice": len(in_stored_twice),
            "webhooked_distinct": len(set(sent_in) & set(hook_ids)),
            "webhook_posts": sum(hook_ids.values()),
            "missing_webhook": len(in_missing_hook),
            "delivered_twice_same_id": len(in_redelivered),
            "delivered_twice_extra_posts": sum(c - 1 for c in in_redelivered.values()),
            "webhooked_twice_other_id": len(in_body_twice),
            "samples": {
                "missing_webhook": in_missing_hook[:10],
                "redelivered": list(in_redelivered)[:10],
                "missing_in_store": in_missing_store[:10],
            },
        },
        "webhooks": {
            "posts": run.receiver.posts,
            "event_ids": len(run.receiver.event_ids),
            "repeated_event_ids": sum(1 for c in run.receiver.event_ids.values() if c > 1),
            "error_webhooks": run.receiver.errors[:10],
        },
    }


# --- the report ------------------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    r = report
    out, st, inb, wh = r["result"]["outbound"], r["result"]["statuses"], r["result"]["inbound"], r["result"]["webhooks"]
    lines = [
        f"# Chaos run {r['started']} — {'PASS' if r['result']['ok'] else 'FAIL'}",
        "",
        f"{r['config']['messages']} messages to {r['config']['phones']} phones ({r['config']['concurrency']} clients), "
        f"{r['config']['inbound_count']} inbound; MariaDB (private) + Mosquitto (private)"
        + (
            f"; multiconnect: 2 masters, {r['config']['shards']} shards on {r['config']['shards'] + 1} coreapps"
            if r["config"].get("ha")
            else ""
        )
        + f"; commit `{r['commit']}`.",
        "",
    ]
    if r["result"]["violations"]:
        lines += ["## Violations", "", *[f"- {v}" for v in r["result"]["violations"]], ""]
    lines += [
        "## Outbound",
        "",
        "| | count |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in out.items() if not isinstance(v, dict)],
        "",
        "Failed attempts (retried) by kind: "
        + (", ".join(f"`{k}` x {v}" for k, v in out["failed_attempts_by_kind"].items()) or "none"),
        "",
        "## Status webhooks",
        "",
        "| status | webhooks | distinct held ids | missing | repeated |",
        "|---|---|---|---|---|",
        *[
            f"| {s} | {st['webhooks_per_status'].get(s, 0)} | {st['distinct_held_ids_per_status'][s]} | "
            f"{st['missing_per_status'][s]} | {st['repeated_per_status'].get(s, 0)} |"
            for s in LADDER
        ],
        "",
        f"Out of ladder order: {st['out_of_order']}; failed: {st['failed']}; "
        f"ids we never held with statuses: {st['ids_not_held_with_statuses']}.",
        "",
        "## Inbound",
        "",
        "| | count |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in inb.items() if not isinstance(v, dict)],
        "",
        f"Webhook POSTs: {wh['posts']}, distinct event ids {wh['event_ids']}, "
        f"repeated event ids {wh['repeated_event_ids']}.",
        "",
        "## Chaos events",
        "",
        "| at (s) | kind | detail | accepted before | recovered in (s) | note |",
        "|---|---|---|---|---|---|",
        *[
            f"| {e['at_s']:.1f} | {e['kind']} | {e['detail']} | {e['accepted_at_trigger']} | {e['recovered_s']} | "
            f"{e['note']} |"
            for e in r["events"]
        ],
        "",
        "## Durations (s)",
        "",
        *[f"- {k}: {v:.1f}" for k, v in r["timings"].items()],
        "",
    ]
    return "\n".join(lines)


def _commit() -> str:
    import subprocess

    with contextlib.suppress(Exception):
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, timeout=5, cwd=Path(__file__).parent
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        return done.stdout.decode().strip() + ("+dirty" if dirty.stdout.strip() else "")
    return "unknown"


async def run_chaos(cfg: ChaosConfig, workdir: Path) -> dict[str, Any]:
    """The whole run; the report (``report["result"]["ok"]``).  Raises ``SetupError`` if it could not start."""
    run = Run(cfg, workdir)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        await run.start()
        await run.prepare()
        if cfg.warmup:
            await run.warm_up()
        print(
            f"chaos: deployed in {run.timings['start_s'] + run.timings['prepare_s']:.1f}s; sending "
            f"{cfg.messages} messages, {cfg.inbound_count} inbound",
            flush=True,
        )
        async with run.progress.ticking(run.progress_line):
            await run.load_phase()
        print(f"chaos: sent in {run.timings['send_s']:.1f}s; draining", flush=True)
        async with run.progress.ticking(run.progress_line):
            await run.drain()
        inboxes = await run.inboxes()
        rows = await asyncio.to_thread(run.stored_rows)
        result = verify(run, inboxes, rows)
        dead = [n for n, p in (run.dep.procs.items() if run.dep else []) if not p.alive()]
        if dead:
            result["violations"].append(f"process(es) dead at the end: {dead}")
            result["ok"] = False
    finally:
        await run.stop()
    return {
        "started": started,
        "commit": _commit(),
        "run_id": run.run_id,
        "workdir": str(workdir),
        "config": {**asdict(cfg), "inbound_count": cfg.inbound_count},
        "events": [asdict(e) for e in run.events],
        "timings": {k: round(v, 2) for k, v in run.timings.items()},
        "result": result,
    }


def write_report(report: dict[str, Any], results_dir: Path) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d-%H%M%S")
    json_path, md_path = results_dir / f"{stem}.json", results_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


def parse_args(argv: list[str] | None = None) -> tuple[ChaosConfig, argparse.Namespace]:
    p = argparse.ArgumentParser(
        prog="python -m tests.chaos.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = ChaosConfig()
    p.add_argument("--messages", type=int, default=d.messages)
    p.add_argument("--phones", type=int, default=d.phones)
    p.add_argument("--inbound", type=int, default=None, help="phone→business messages (default messages/20)")
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--core-kills", type=int, default=d.core_kills)
    p.add_argument("--drops", type=int, default=d.drops)
    p.add_argument("--mqtt-restarts", type=int, default=d.mqtt_restarts)
    p.add_argument("--db-restarts", type=int, default=d.db_restarts)
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s)
    p.add_argument("--stall-timeout", type=float, default=d.stall_timeout_s)
    p.add_argument("--log-level", default=d.log_level)
    p.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the first message to every phone (reproduces the crossed-session bug)",
    )
    p.add_argument(
        "--ha",
        action="store_true",
        help="multiconnect: 2 masters, --shards shards on shards + 1 coreapps; kills hit owners",
    )
    p.add_argument("--shards", type=int, default=d.shards, choices=(1, 2, 4))
    p.add_argument("--master-kills", type=int, default=None, help="HA: SIGKILLs of the primary master (default 1)")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--keep-workdir", action="store_true", help="keep logs and state even when the run passed")
    a = p.parse_args(argv)
    cfg = ChaosConfig(
        messages=a.messages,
        phones=a.phones,
        inbound=a.inbound,
        concurrency=a.concurrency,
        core_kills=a.core_kills,
        drops=a.drops,
        mqtt_restarts=a.mqtt_restarts,
        db_restarts=a.db_restarts,
        drain_timeout_s=a.drain_timeout,
        stall_timeout_s=a.stall_timeout,
        log_level=a.log_level,
        warmup=a.warmup,
        ha=a.ha,
        shards=a.shards,
        master_kills=(1 if a.ha else 0) if a.master_kills is None else a.master_kills,
    )
    return cfg, a


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="openprem-chaos-"))
    try:
        report = asyncio.run(run_chaos(cfg, workdir))
    except SetupError as exc:
        print(f"chaos: set-up failed: {exc}\nlogs: {workdir}", file=sys.stderr)
        return 2
    json_path, md_path = write_report(report, args.results_dir)
    print(md_path.read_text())
    print(f"chaos: report {json_path} and {md_path}")
    if report["result"]["ok"] and not args.keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"chaos: logs and state kept in {workdir}")
    return 0 if report["result"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
