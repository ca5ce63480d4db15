"""The floor: the least a send can do here, to put our numbers in proportion.

``python -m bench.floor``: an aiohttp HTTPS server whose ``POST /v1/messages`` reads the JSON body, inserts one
row into MariaDB through an asyncmy pool, commits, and answers 201 ``{"messages":[{"id"}]}``, as our webapp
does, but with no auth lookup, bus, Signal, chat network or webhooks.  It runs on the product's event loop
(``shared.lifecycle.event_loop_runner``: uvloop where installed) with webapp's own TLS context
(``webapp.tls.server_context``), so the comparison is fair.  It creates its own database at start and drops it
at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import uuid
from pathlib import Path

import asyncmy
from aiohttp import web

from shared.lifecycle import event_loop_runner
from webapp.tls import server_context

_TABLE = """
CREATE TABLE IF NOT EXISTS messages (
    id VARCHAR(64) NOT NULL PRIMARY KEY,
    recipient VARCHAR(32) NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
)
"""


class Floor:
    def __init__(self, pool: asyncmy.Pool) -> None:
        self._pool = pool

    async def send(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"errors": [{"code": 1005}]}, status=401)
        message_id = "wamid." + uuid.uuid4().hex
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO messages (id, recipient, body) VALUES (%s, %s, %s)",
                (message_id, str(body.get("to", "")), json.dumps(body)),
            )
            await conn.commit()
        return web.json_response({"messages": [{"id": message_id}]}, status=201)


async def serve(args: argparse.Namespace) -> None:
    admin = await asyncmy.connect(host=args.db_host, port=args.db_port, user=args.db_user, password=args.db_password)
    async with admin.cursor() as cur:
        await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{args.database}`")
    pool = await asyncmy.create_pool(
        host=args.db_host,
        port=args.db_port,
        user=args.db_user,
        password=args.db_password,
        db=args.database,
        minsize=args.pool,
        maxsize=args.pool,
        autocommit=False,
    )
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(_TABLE)
        await conn.commit()
    ctx = server_context(args.cert, args.key)  # webapp's own TLS settings
    app = web.Application()
    app.router.add_post("/v1/messages", Floor(pool).send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=ctx).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        pool.close()
        await pool.wait_closed()
        async with admin.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--db-host", default="127.0.0.1")
    parser.add_argument("--db-port", type=int, default=3306)
    parser.add_argument("--db-user", default="root")
    parser.add_argument("--db-password", default="")
    parser.add_argument("--database", required=True)
    parser.add_argument("--pool", type=int, default=10, help="pool size (SQLAlchemy's default is 5 + 10 overflow)")
    event_loop_runner()(serve(parser.parse_args()))  # the product's loop (uvloop where installed)


if __name__ == "__main__":
    main()
