"""``openprem webhook-echo``: a tiny webhook receiver for demos that prints every request and answers 200.

Webhooks are only considered delivered on HTTP 200, so ``python3 -m http.server`` (501 on POST) does not
do.  JSON bodies are pretty-printed; anything else is shown as text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from datetime import UTC, datetime
from typing import TextIO

from aiohttp import web


def render(method: str, path: str, body: bytes) -> str:
    """One printed block per request."""
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    try:
        text = json.dumps(json.loads(body), indent=2, ensure_ascii=False) if body else ""
    except ValueError:
        text = body.decode("utf-8", errors="replace")
    return f"--- {stamp} {method} {path} ({len(body)} bytes)\n{text}\n"


def make_app(out: TextIO | None = None) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        print(render(request.method, request.path_qs, body), file=out or sys.stdout, flush=True)
        return web.json_response({})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"webhook-echo listening on http://{host}:{port}/ (any path); Ctrl-C stops it", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(host: str, port: int) -> int:
    try:
        asyncio.run(serve(host, port))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"webhook-echo: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
