"""Multiconnect on the network side (issue 11 item 3): one connection per shard of a number, each getting the
pushes of its own peers (``shared.shards.shard_of``); two connections for the same shard are still the On-Prem
conflict, and a new shard count closes the sessions of the old one."""

from __future__ import annotations

import asyncio

import pytest

from chatd.app import Chatd
from shared.config import SandboxSettings
from shared.shards import SHARD_COUNTS, shard_of
from shared.wire.frames import Deliver, Error, Hello, Kick, OfflineDone
from tests.chatd.client import Admin, Client, register
from tests.chatd.test_messaging import BUSINESS

PHONES = [f"1202555{n:04d}" for n in range(200, 212)]


def test_the_shard_hash_is_stable_and_spreads() -> None:
    # Fixed values: the network and every coreapp must agree on them forever (changing them moves every peer).
    assert [shard_of(p, 4) for p in ("12025550123", "+12025550123", "447700900123")] == [
        shard_of("12025550123", 4),
        shard_of("12025550123", 4),
        shard_of("447700900123", 4),
    ]
    assert shard_of("12025550123", 1) == 0
    assert {shard_of(f"1202555{n:04d}", 2) for n in range(100)} == {0, 1}
    for n in range(100):  # doubling the count splits a shard in two: s -> s or s + N
        peer = f"1202555{n:04d}"
        assert shard_of(peer, 4) % 2 == shard_of(peer, 2)
    with pytest.raises(ValueError):
        shard_of("12025550123", 3)
    assert SHARD_COUNTS == (1, 2, 4, 8, 16, 32)


async def _says(admin: Admin, phone: str, body: str) -> str:
    doc = await admin.call(
        "POST", f"/admin/phones/{phone}/send", {"to": BUSINESS, "type": "text", "text": {"body": body}}
    )
    return str(doc["id"])


async def _drain(client: Client) -> list[Deliver]:
    got: list[Deliver] = []
    while True:
        frame = await client.next_push()
        if isinstance(frame, OfflineDone):
            return got
        assert isinstance(frame, Deliver), frame
        got.append(frame)
        await client.ack(frame)


async def test_each_shard_has_its_own_connection_and_its_own_peers(
    chatd: Chatd, settings: SandboxSettings, admin: Admin
) -> None:
    for phone in PHONES:
        await admin.call("POST", "/admin/phones", {"wa_id": phone})
    first = await Client.connect(settings.port, chatd.ca_file)
    identity = await register(first, admin, "1", "2025550100")
    waiting = {phone: await _says(admin, phone, "while offline") for phone in PHONES}  # queued before any login

    await first.login(BUSINESS, identity, shard=0, shards=2)
    second = await Client.connect(settings.port, chatd.ca_file)
    await second.login(BUSINESS, identity, shard=1, shards=2)
    backlog = {0: await _drain(first), 1: await _drain(second)}
    for shard, delivered in backlog.items():
        assert {d.sender for d in delivered} == {p for p in PHONES if shard_of(p, 2) == shard}
    assert {d.message_id for ds in backlog.values() for d in ds} == set(waiting.values())

    live = [await _says(admin, phone, "live") for phone in PHONES]  # both connected: straight to the right one
    got: dict[int, list[Deliver]] = {0: [], 1: []}
    clients = {0: first, 1: second}
    while sum(map(len, got.values())) < len(PHONES):
        reads = {asyncio.ensure_future(client.next_push()): shard for shard, client in clients.items()}
        done, pending = await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED, timeout=10)
        for task in pending:
            task.cancel()
        assert done, "a live push did not arrive"
        for task in done:
            frame = task.result()
            assert isinstance(frame, Deliver) and shard_of(frame.sender, 2) == reads[task]  # the peer's own shard
            await clients[reads[task]].ack(frame)
            got[reads[task]].append(frame)
    assert sorted(d.message_id for ds in got.values() for d in ds) == sorted(live)
    assert not first.closed.is_set() and not second.closed.is_set()  # no conflict between shards

    third = await Client.connect(settings.port, chatd.ca_file)  # a second connection for shard 1: the conflict
    await third.login(BUSINESS, identity, shard=1, shards=2)
    kick = await second.next_push()
    assert isinstance(kick, Kick) and kick.conflict
    assert not first.closed.is_set()

    regrown = await Client.connect(settings.port, chatd.ca_file)  # the number moves to 4 shards
    await regrown.login(BUSINESS, identity, shard=0, shards=4)
    for old in (first, third):
        frame = await old.next_push()
        while not isinstance(frame, Kick):
            frame = await old.next_push()
        assert not frame.conflict and "shard count" in frame.reason
    for client in (first, second, third, regrown):
        await client.close()


async def test_a_shard_outside_the_count_is_refused(chatd: Chatd, settings: SandboxSettings, admin: Admin) -> None:
    client = await Client.connect(settings.port, chatd.ca_file)
    await register(client, admin, "1", "2025550100")
    for shard, shards in ((2, 2), (-1, 2), (0, 3)):
        reply = await client.request(Hello(wa_id=BUSINESS, client_version="2.41.2", shard=shard, shards=shards))
        assert isinstance(reply, Error) and reply.code == 1009, reply
        await asyncio.wait_for(client.closed.wait(), 5)
        await client.close()
        client = await Client.connect(settings.port, chatd.ca_file)
    await client.close()
