"""The bench's progress line on a terminal: ``bench: sent 4,200/10,000  delivered 4,100  37 s``.

Only when standard error is a terminal (``shared.progress``): then the delivered count is read from the bench's
own webhook receiver once a second (``GET /progress``, a separate process: nothing the measured processes do).
Anywhere else nothing is polled and nothing printed, so the measurement and the output are what they were.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from bench.deploy import BenchDeployment
from bench.load import Sample
from shared.progress import Progress, count
from shared.tasks import TaskSupervisor

POLL_S = 1.0


@dataclass
class Live:
    """The figures on the line; ``on_sample`` is what the load generator calls after each answer."""

    total: int
    sent: int = 0
    failed: int = 0
    delivered: int = 0

    def on_sample(self, sample: Sample) -> None:
        if sample.message_id is not None:
            self.sent += 1
        else:
            self.failed += 1

    def render(self) -> str:
        line = f"sent {count(self.sent)}/{count(self.total)}  delivered {count(self.delivered)}"
        return line + (f"  failed {count(self.failed)}" if self.failed else "")


@contextlib.asynccontextmanager
async def live_progress(
    dep: BenchDeployment, tasks: TaskSupervisor, total: int, label: str = "bench"
) -> AsyncIterator[Live]:
    """A progress line for one phase (sending, then waiting for the ``delivered`` webhooks)."""
    live = Live(total)
    progress = Progress(label)
    if not progress.enabled:
        yield live
        return
    start = await _delivered(dep)
    poller = tasks.spawn(f"progress-{label}", _poll(dep, live, start))
    try:
        async with progress.ticking(live.render):
            yield live
            live.delivered = await _delivered(dep) - start  # the last line is exact, not a second old
    finally:
        poller.cancel()
        await asyncio.wait([poller])


async def _poll(dep: BenchDeployment, live: Live, start: int) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
                live.delivered = int((await dep.progress(session))["statuses"].get("delivered", 0)) - start
            await asyncio.sleep(POLL_S)


async def _delivered(dep: BenchDeployment) -> int:
    """The receiver's count before the phase (the warm-up's are cleared, a soak's earlier ones are not)."""
    async with aiohttp.ClientSession() as session:
        try:
            return int((await dep.progress(session))["statuses"].get("delivered", 0))
        except (aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
            return 0
