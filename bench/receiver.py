"""The benchmark's webhook receiver, run as its own process so its CPU does not skew the load generator.

``python -m bench.receiver --port P``: ``POST /webhook`` records each status's first arrival time
(``time.monotonic()``: CLOCK_MONOTONIC, the same clock in every process of the host) and answers 200;
``GET /progress`` gives counts, ``GET /dump`` every arrival and the duplicate counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from typing import Any

from aiohttp import web


class Receiver:
    """What arrived: status -> message id -> first arrival; duplicates by (id, status) and by event id."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.arrivals: dict[str, dict[str, float]] = {}
        self.duplicate_statuses = 0
        self.duplicate_events = 0
        self.events = 0
        self.other_events = 0  # inbound messages, errors: unexpected in a send benchmark
        self.samples: list[dict[str, Any]] = []  # the first few bodies of each kind, for the report
        self._event_ids: set[str] = set()

    async def webhook(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        body = json.loads(await request.read())
        self.events += 1
        event_id = request.headers.get("X-OpenPrem-Event-Id")
        if event_id is not None:
            if event_id in self._event_ids:
                self.duplicate_events += 1
            self._event_ids.add(event_id)
        statuses = body.get("statuses") or []
        if not statuses:
            self.other_events += 1
            if len(self.samples) < 5:
                self.samples.append(body)
        for status in statuses:
            seen = self.arrivals.setdefault(str(status.get("status")), {})
            message_id = str(status.get("id"))
            if message_id in seen:
                self.duplicate_statuses += 1
            else:
                seen[message_id] = now
        return web.Response(status=200)

    async def progress(self, _request: web.Request) -> web.Response:
        return web.json_response({"events": self.events, "statuses": {k: len(v) for k, v in self.arrivals.items()}})

    async def dump(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "events": self.events,
                "arrivals": self.arrivals,
                "duplicate_statuses": self.duplicate_statuses,
                "duplicate_events": self.duplicate_events,
                "other_events": self.other_events,
                "samples": self.samples,
            }
        )

    async def reset(self, _request: web.Request) -> web.Response:
        """Forget everything (between the warm-up and the measured phase)."""
        self.clear()
        return web.json_response({})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/webhook", self.webhook)
        app.router.add_get("/progress", self.progress)
        app.router.add_get("/dump", self.dump)
        app.router.add_post("/reset", self.reset)
        return app


async def serve(port: int) -> None:
    runner = web.AppRunner(Receiver().app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
