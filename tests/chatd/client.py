"""A minimal business client for chatd tests: frames over TLS, replies matched by id, pushes queued."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

import aiohttp

from shared.tasks import TaskSupervisor
from shared.wire import codec, e2e
from shared.wire.frames import (
    Ack,
    Challenge,
    Deliver,
    Frame,
    Hello,
    IdentityChanged,
    Kick,
    Login,
    LoginOk,
    OfflineDone,
    Receipt,
    RegisterRequest,
    VerifyRequest,
)

PUSHES = (Deliver, Receipt, OfflineDone, Kick, IdentityChanged)


class Admin:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession()

    async def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        async with self.http.request(method, self.base + path, json=body) as resp:
            doc = await resp.json()
            if expect is not None:
                assert resp.status == expect, (resp.status, doc)
            elif resp.status >= 400:
                raise AssertionError(f"{method} {path}: {resp.status} {doc}")
            return doc

    async def close(self) -> None:
        await self.http.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pushes: asyncio.Queue[Frame] = asyncio.Queue()
        self.errors: list[Frame] = []
        self._waiting: dict[int, asyncio.Future[Frame]] = {}
        self._next_id = 1
        self._tasks = TaskSupervisor("test-client")
        self.closed = asyncio.Event()
        self._tasks.spawn("reader", self._read())

    @classmethod
    async def connect(cls, port: int, ca_file: Path, server_name: str = "chat.openprem.local") -> Client:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=server_name)
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                frame = codec.decode(await codec.read_body(self.reader))
                fut = self._waiting.pop(frame.id, None) if not isinstance(frame, PUSHES) else None
                if fut is not None:
                    fut.set_result(frame)
                else:
                    await self.pushes.put(frame)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self.closed.set()
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def request(self, frame: Any, timeout: float = 10.0) -> Frame:
        frame.id = self._next_id
        self._next_id += 1
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[frame.id] = fut
        await self.send_raw(codec.encode(frame))
        return await asyncio.wait_for(fut, timeout)

    async def ack(self, frame: Frame) -> None:
        await self.send_raw(codec.encode(Ack(id=frame.id)))

    async def next_push(self, timeout: float = 10.0) -> Frame:
        return await asyncio.wait_for(self.pushes.get(), timeout)

    async def login(self, wa_id: str, identity: e2e.Identity, *, shard: int = 0, shards: int = 1) -> LoginOk:
        challenge = await self.request(Hello(wa_id=wa_id, client_version="2.41.2", shard=shard, shards=shards))
        assert isinstance(challenge, Challenge), challenge
        ok = await self.request(Login(signature=identity.sign(challenge.nonce)))
        assert isinstance(ok, LoginOk), ok
        return ok

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        await self._tasks.close()


async def issue_cert(admin: Admin, cc: str, number: str, vname: str) -> str:
    body = {"cc": cc, "phone_number": number, "vname": vname}
    return str((await admin.call("POST", "/admin/certificates", body))["cert"])


async def register(client: Client, admin: Admin, cc: str, number: str, vname: str = "Acme") -> e2e.Identity:
    """Register a business and upload its keys; returns its identity."""
    cert = await issue_cert(admin, cc, number, vname)
    reply = await client.request(RegisterRequest(cc=cc, phone_number=number, method="sms", cert=cert))
    assert reply.status == "code_sent" and reply.vname == vname, reply  # type: ignore[union-attr]
    code = (await admin.call("GET", f"/admin/codes/{cc}{number}"))["code"]
    identity = await e2e.Identity.create(20)
    reply = await client.request(
        VerifyRequest(
            cc=cc,
            phone_number=number,
            code=code,
            identity_key=identity.public_key,
            signed_prekey=identity.signed_prekey(),
            one_time_prekeys=identity.one_time_prekeys(),
        )
    )
    assert reply.wa_id == cc + number, reply  # type: ignore[union-attr]
    return identity
