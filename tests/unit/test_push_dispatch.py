"""Push handling: a failing handler is retried in place (order kept); one that keeps failing raises PushFailed,
which makes the connection drop the session so the network replays the push (never silently left unacked).
Consecutive receipts go to their group handler together, without reordering them against other pushes."""

from __future__ import annotations

import asyncio

import pytest

from coreapp.chat.connection import ChatConnection
from coreapp.chat.dispatch import PushDispatcher, PushFailed
from shared.config import ChatSettings
from shared.ids import WaId
from shared.tasks import TaskSupervisor
from shared.wire.frames import Deliver, Envelope, EnvelopeKind, Frame, Receipt, ReceiptStatus


def _receipt(frame_id: int = 7) -> Receipt:
    return Receipt(id=frame_id, message_id="m", recipient="1", device_id=0, status=ReceiptStatus.READ, timestamp=1)


def _deliver(frame_id: int) -> Deliver:
    envelope = Envelope(device_id=0, kind=EnvelopeKind.MESSAGE, body=b"")
    return Deliver(
        id=frame_id,
        message_id=f"in{frame_id}",
        sender="1",
        sender_device=0,
        sender_name="",
        envelope=envelope,
        timestamp=1,
    )


async def test_a_transient_failure_is_retried_until_it_succeeds() -> None:
    calls: list[int] = []

    async def flaky(frame: Receipt) -> None:
        calls.append(frame.id)
        if len(calls) < 3:
            raise ConnectionError("database restarting")

    dispatcher = PushDispatcher(retry_delays_s=(0.0, 0.0, 0.0))
    dispatcher.register(Receipt, flaky)
    await dispatcher.dispatch(_receipt())
    assert calls == [7, 7, 7]


async def test_a_push_that_keeps_failing_raises_push_failed() -> None:
    calls = 0

    async def broken(_frame: Receipt) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("database gone")

    dispatcher = PushDispatcher(retry_delays_s=(0.0, 0.0))
    dispatcher.register(Receipt, broken)
    with pytest.raises(PushFailed):
        await dispatcher.dispatch(_receipt())
    assert calls == 3  # the first attempt and two retries


async def test_a_group_goes_to_the_group_handler_and_is_retried_whole() -> None:
    seen: list[list[int]] = []

    async def flaky_group(frames: list[Receipt]) -> None:
        seen.append([f.id for f in frames])
        if len(seen) < 2:
            raise ConnectionError("database restarting")

    dispatcher = PushDispatcher(retry_delays_s=(0.0, 0.0))
    dispatcher.register_group(Receipt, flaky_group)
    assert dispatcher.groups(Receipt) and not dispatcher.groups(Deliver)
    await dispatcher.dispatch_group([_receipt(1), _receipt(2), _receipt(3)])
    assert seen == [[1, 2, 3], [1, 2, 3]]


async def test_the_push_worker_groups_consecutive_receipts_and_keeps_arrival_order() -> None:
    handled: list[tuple[str, list[int]]] = []

    async def receipts(frames: list[Receipt]) -> None:
        handled.append(("receipts", [f.id for f in frames]))

    async def deliver(frame: Deliver) -> None:
        handled.append(("deliver", [frame.id]))

    dispatcher = PushDispatcher()
    dispatcher.register_group(Receipt, receipts)
    dispatcher.register(Deliver, deliver)
    connection = ChatConnection(
        ChatSettings(host="127.0.0.1"), TaskSupervisor("test"), WaId("1"), lambda nonce: nonce, dispatcher
    )
    queue: asyncio.Queue[Frame] = asyncio.Queue()
    for frame in (_receipt(1), _receipt(2), _deliver(3), _receipt(4), _receipt(5), _receipt(6), _deliver(7)):
        queue.put_nowait(frame)
    worker = asyncio.create_task(connection._push_worker(queue))
    try:
        while len(handled) < 4:
            await asyncio.sleep(0.01)
    finally:
        worker.cancel()
    assert handled == [("receipts", [1, 2]), ("deliver", [3]), ("receipts", [4, 5, 6]), ("deliver", [7])]
