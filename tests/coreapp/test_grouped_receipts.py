"""Receipts that arrive together are applied in one transaction (``ReceiptService.handle_many``): the result must
be exactly what applying them one by one gives — statuses, errors, the receipt log, the status webhooks and their
order, the acks — on every backend, for the awkward cases: duplicates inside the group and across groups, skipped
rungs, ``failed`` beside ``delivered`` from two devices, unknown ids.  The grouped status writer is also what the
sender's acks use."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.link import ConnState
from coreapp.models import MessageDirection, MessageStatus, NewMessage
from coreapp.services.receipts import ReceiptService
from coreapp.services.statuses import StatusWriter
from coreapp.storage.tables import message_receipt_log, messages
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from shared.ids import MessageId, WaId
from shared.message_types import MessageType
from shared.wire.frames import Frame, Receipt, ReceiptStatus
from tests.coreapp.conftest import Core, CoreFactory, Sandbox

PHONE = "15550001111"
D, R, F = ReceiptStatus.DELIVERED, ReceiptStatus.READ, ReceiptStatus.FAILED

# Messages by suffix and their stored status before the receipts.
START = {
    "m1": MessageStatus.SENT,
    "m2": MessageStatus.SENT,
    "m3": MessageStatus.SENT,
    "m4": MessageStatus.SENT,
    "m5": MessageStatus.SENT,
    "m6": MessageStatus.ACCEPTED,  # its `sent` ack was lost: a delivered receipt implies it
}
# (suffix, device, status, error code): applied once before, then all of RECEIPTS.
BEFORE = [("m5", 0, F, 1026)]
RECEIPTS = [
    ("m1", 0, D, None),
    ("m1", 0, D, None),  # the same receipt twice in one group
    ("m1", 0, R, None),
    ("m2", 0, R, None),  # skips delivered
    ("m3", 1, F, 1026),  # one device fails ...
    ("m3", 0, D, None),  # ... the other gets it: delivered after failed
    ("m4", 0, D, None),
    ("m4", 1, F, 470),  # failed after delivered: reported, the status stays delivered
    ("m5", 0, F, 1026),  # already logged before this group
    ("m5", 1, F, 1026),  # a second failing device: one failed per message
    ("m6", 0, D, None),
    ("zz", 0, D, None),  # no such message
    ("m1", 0, D, None),  # repeated at the end of the group
]


class _AckLog:
    """The chat link as receipts see it: records acks (this test is about the database, not the network)."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    @property
    def state(self) -> ConnState:
        return ConnState.READY

    @property
    def generation(self) -> int:
        return 1

    async def wait_ready(self) -> None:
        return None

    async def request(self, frame: Frame, timeout_s: float = 30.0) -> Frame:
        raise AssertionError("receipts send no requests")

    async def send_request(self, frame: Frame) -> asyncio.Future[Frame]:
        raise AssertionError("receipts send no requests")

    async def ack(self, push: Frame) -> None:
        self.acked.append(push.id)


def _receipt(frame_id: int, prefix: str, suffix: str, device: int, status: ReceiptStatus, code: int | None) -> Receipt:
    return Receipt(
        id=frame_id,
        message_id=f"{prefix}{suffix}",
        recipient=PHONE,
        device_id=device,
        status=status,
        timestamp=1_700_000_000 + frame_id,
        error_code=code,
        error_title="Re-engagement message" if code == 470 else None,
    )


async def _seed(core: Core, prefix: str) -> None:
    rows = [
        NewMessage(MessageId(f"{prefix}{s}"), MessageDirection.OUT, WaId(PHONE), MessageType.TEXT, "{}", status, 0)
        for s, status in START.items()
    ]

    async def seed_txn(conn: AsyncConnection) -> None:
        await core.app.stores.messages.insert_many_txn(conn, rows)

    await core.app.db.run("test.seed", seed_txn)


async def _outcome(core: Core, prefix: str) -> dict[str, Any]:
    """Everything the receipts changed for messages with ``prefix``, with the prefix taken off the ids."""
    async with core.app.db.engine.connect() as conn:
        rows = await conn.execute(
            select(messages.c.id, messages.c.status, messages.c.error_code, messages.c.error_title).where(
                messages.c.id.like(f"{prefix}%")
            )
        )
        stored = {r.id.removeprefix(prefix): (r.status, r.error_code, r.error_title) for r in rows}
        log_rows = await conn.execute(
            select(message_receipt_log).where(message_receipt_log.c.message_id.like(f"{prefix}%"))
        )
        logged = {(r.message_id.removeprefix(prefix), r.device_id, r.status) for r in log_rows}
        outbox = await conn.execute(select(webhook_outbox.c.body).order_by(webhook_outbox.c.seq))
        webhooks = []
        for row in outbox:
            for entry in orjson.loads(row.body)["statuses"]:
                if entry["id"].startswith(prefix):
                    webhooks.append({**entry, "id": entry["id"].removeprefix(prefix)})
    return {"stored": stored, "logged": logged, "webhooks": webhooks}


async def test_grouped_receipts_do_exactly_what_one_by_one_does(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await make_core(backend)
    await core.rpc("settings.patch_application", {"application": {"sent_status": True}})
    stores = core.app.stores
    outcomes: dict[str, dict[str, Any]] = {}
    for prefix, grouped in (("one-", False), ("all-", True)):
        link = _AckLog()
        service = ReceiptService(
            core.app.db,
            link,
            stores.messages,
            StatusWriter(stores.messages, stores.webhooks),
            stores.settings,
            lambda: None,
        )
        await _seed(core, prefix)
        for i, (s, device, status, code) in enumerate(BEFORE):
            await service.handle(_receipt(100 + i, prefix, s, device, status, code))
        frames = [_receipt(i + 1, prefix, *spec) for i, spec in enumerate(RECEIPTS)]
        if grouped:
            await service.handle_many(frames)
        else:
            for frame in frames:
                await service.handle(frame)
        assert link.acked == [100, *range(1, len(RECEIPTS) + 1)]  # every receipt acked, in order
        outcomes[prefix] = await _outcome(core, prefix)
        # The metric (message_receipts_total{status}): each receipt new to the log once, replays and repeats not.
        assert service.applied == {MessageStatus.DELIVERED: 5, MessageStatus.READ: 2, MessageStatus.FAILED: 4}

    assert outcomes["all-"] == outcomes["one-"]

    # And what that is, spelled out (so both cannot be wrong the same way).
    outcome = outcomes["all-"]
    stored = outcome["stored"]
    assert {k: v[:2] for k, v in stored.items()} == {
        "m1": ("read", None),
        "m2": ("read", None),
        "m3": ("delivered", 1026),  # delivered after all; the failure's code stays on record
        "m4": ("delivered", None),
        "m5": ("failed", 1026),
        "m6": ("delivered", None),
    }
    assert stored["m3"][2] and stored["m5"][2]  # each code is kept with its title
    steps = [(w["id"], w["status"]) for w in outcome["webhooks"]]
    assert steps == [
        ("m5", "failed"),
        ("m1", "delivered"),
        ("m1", "read"),
        ("m2", "delivered"),
        ("m2", "read"),
        ("m3", "failed"),
        ("m3", "delivered"),
        ("m4", "delivered"),
        ("m4", "failed"),
        ("m6", "sent"),
        ("m6", "delivered"),
    ]
    errors = {w["id"]: w["errors"][0]["code"] for w in outcome["webhooks"] if w["status"] == "failed"}
    assert errors == {"m5": 1026, "m3": 1026, "m4": 470}
    assert ("m5", 1, "failed") in outcome["logged"]
    assert len(outcome["logged"]) == 11  # distinct (message, device, status), the unknown id's too
