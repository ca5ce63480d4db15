"""Push handling: a failing handler is retried in place (order kept); one that keeps failing raises PushFailed,
which makes the connection drop the session so the network replays the push (never silently left unacked)."""

from __future__ import annotations

import pytest

from coreapp.chat.dispatch import PushDispatcher, PushFailed
from shared.wire.frames import Receipt, ReceiptStatus


def _receipt() -> Receipt:
    return Receipt(id=7, message_id="m", recipient="1", device_id=0, status=ReceiptStatus.READ, timestamp=1)


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
