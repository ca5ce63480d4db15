"""The start-up gate: a process started before its database waits for it (as ``wait_on_mysql.sh`` did), and one
whose database never comes gives up after ``WA_DB_STARTUP_WAIT`` with a one-line reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from shared.config import DbEngine, DbSettings
from shared.db import Database
from shared.lifecycle import describe, run_process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _late_proxy(listen_port: int, target: DbSettings, delay_s: float) -> asyncio.Server:
    """After ``delay_s``, forward ``listen_port`` to the real database server: a database that starts late."""
    await asyncio.sleep(delay_s)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(target.hostname, target.effective_port)
        await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

    return await asyncio.start_server(handle, "127.0.0.1", listen_port)


async def test_connect_waits_for_a_database_that_starts_late(backend: DbSettings, caplog) -> None:
    if backend.engine is DbEngine.SQLITE:
        pytest.skip("SQLite is a file: nothing to wait for")
    port = _free_port()
    late = backend.model_copy(update={"port": port, "startup_wait_s": 30.0})
    caplog.set_level(logging.WARNING, logger="openprem.db")
    proxy_task = asyncio.ensure_future(_late_proxy(port, backend, delay_s=1.5))
    started = time.monotonic()
    try:
        db = await Database.connect(late)
        try:
            assert await db.run("ping", lambda conn: conn.scalar(sa.text("SELECT 1"))) == 1
        finally:
            await db.close()
    finally:
        server = await proxy_task
        server.close()
    assert time.monotonic() - started >= 1.0
    assert any("waiting for the database" in r.getMessage() for r in caplog.records)


async def test_connect_gives_up_after_the_startup_wait(backend: DbSettings) -> None:
    if backend.engine is DbEngine.SQLITE:
        pytest.skip("SQLite is a file: nothing to wait for")
    never = backend.model_copy(update={"port": _free_port(), "startup_wait_s": 1.0})
    started = time.monotonic()
    with pytest.raises(DBAPIError) as info:
        await Database.connect(never)
    assert time.monotonic() - started < 10
    reason = describe(info.value)
    assert reason is not None and reason.startswith("database error:")
    assert "\n" not in reason


def test_run_process_turns_an_environment_failure_into_exit_1(caplog) -> None:
    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")

    caplog.set_level(logging.CRITICAL, logger="openprem")
    assert run_process("coreapp", refused()) == 1
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage().startswith("coreapp cannot run: ConnectionRefusedError")
    assert record.exc_info is None  # an environment failure is one line, not a traceback


def test_run_process_keeps_the_traceback_of_a_bug(caplog) -> None:
    async def bug() -> None:
        raise KeyError("oops")

    caplog.set_level(logging.CRITICAL, logger="openprem")
    assert run_process("webapp", bug()) == 1
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.exc_info is not None
