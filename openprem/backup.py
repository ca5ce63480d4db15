"""``openprem backup FILE`` / ``openprem restore FILE``: the API's backup and restore from a terminal, with progress.

A backup is coreapp's (``POST /v1/settings/backup``: the settings and keys under a password, scrypt N=2^17, seconds
of CPU) and a restore replaces them and restarts the chat connection, so these commands are clients of the API:
log in (``POST /v1/users/login``, Basic credentials, a ROLE_ADMIN user), call, write the blob (0600) or send it.
On a terminal one line says which step runs and for how long (``shared.progress``; a restore also counts the bytes
sent); elsewhere nothing but the result line on standard output, and errors on standard error.

Passwords come from ``OPENPREM_PASSWORD`` (the API user's) and ``OPENPREM_BACKUP_PASSWORD`` (the backup's), or are
asked for on the terminal; never from the command line, where ``ps`` would show them.  The webapp's certificate is
checked against ``--cacert`` (default: the embedded install's ``$WA_DATA_DIR/web/server.crt`` when it exists).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from shared.private_files import private_opener, tighten
from shared.progress import Progress

DEFAULT_URL = "https://localhost:9090"
DEFAULT_DATA_DIR = Path("var/data")
TIMEOUT_S = 120.0
"""Above webapp's own budget for the RPC (60 s), so its answer, not ours, says when coreapp is too slow."""
CHUNK = 256 * 1024
PASSWORD_ENV = "OPENPREM_PASSWORD"
BACKUP_PASSWORD_ENV = "OPENPREM_BACKUP_PASSWORD"


class CliError(Exception):
    """A failure to report in one line (exit 1)."""


@dataclass(frozen=True)
class Target:
    url: str
    user: str
    password: str
    ssl: ssl.SSLContext | bool


def add_arguments(parser: argparse.ArgumentParser, *, restore: bool) -> None:
    what = "the backup file to restore" if restore else "where to write the backup (created 0600)"
    parser.add_argument("file", type=Path, help=what)
    parser.add_argument("--url", default=os.environ.get("OPENPREM_URL", DEFAULT_URL), help=f"default {DEFAULT_URL}")
    parser.add_argument("--user", default="admin", help="a ROLE_ADMIN user (default admin)")
    parser.add_argument("--cacert", type=Path, default=None, help="the webapp's certificate or its CA")
    parser.add_argument("--insecure", action="store_true", help="do not check the webapp's certificate")


def _ssl(args: argparse.Namespace) -> ssl.SSLContext | bool:
    if args.insecure:
        return False
    cafile: Path | None = args.cacert
    if cafile is None:
        default = Path(os.environ.get("WA_DATA_DIR", str(DEFAULT_DATA_DIR))) / "web" / "server.crt"
        cafile = default if default.is_file() else None
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


def _secret(env: str, prompt: str, *, confirm: bool = False) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise CliError(f"set {env} (no terminal to ask on)")
    value = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != value:
        raise CliError("the two passwords differ")
    return value


def _errors(status: int, body: Any) -> str:
    if isinstance(body, dict) and body.get("errors"):
        first = body["errors"][0]
        return f"HTTP {status}, {first.get('code')} {first.get('title')}: {first.get('details', '')}".rstrip(": ")
    return f"HTTP {status}"


async def _json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return None


async def _login(session: aiohttp.ClientSession, target: Target) -> str:
    auth = aiohttp.encode_basic_auth(target.user, target.password)
    async with session.post(f"{target.url}/v1/users/login", headers={"Authorization": auth}, ssl=target.ssl) as resp:
        body = await _json(resp)
        if resp.status != 200:
            hint = " (first login: change the password first, e.g. in /console)" if resp.status == 401 else ""
            raise CliError(f"login as {target.user} refused: {_errors(resp.status, body)}{hint}")
        return str(body["users"][0]["token"])


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` 0600 (the blob holds the keys, under its password); an existing file is narrowed first."""
    if path.exists():
        tighten(path)
    with open(path, "wb", opener=private_opener) as f:
        f.write(data)


class Step:
    """What the progress line says now: a phase, and for an upload how far it got."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sent = 0
        self.total = 0

    def render(self) -> str:
        if self.total and self.sent < self.total:
            return f"sending {self.sent:,}/{self.total:,} bytes"
        return self.text


async def backup(target: Target, backup_password: str, out: Path, stream: TextIO | None = None) -> int:
    """Log in, ask coreapp for the blob, write it; the number of bytes written."""
    step = Step("logging in")
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with (
        Progress("backup", stream).ticking(step.render, keep=False),
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        token = await _login(session, target)
        step.text = "coreapp is deriving the key and encrypting (scrypt)"
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{target.url}/v1/settings/backup"
        async with session.post(url, json={"password": backup_password}, headers=headers, ssl=target.ssl) as resp:
            answer = await _json(resp)
            if resp.status != 200:
                raise CliError(f"backup refused: {_errors(resp.status, answer)}")
        data = str(answer["settings"]["data"]).encode()
        step.text = f"writing {out}"
        await asyncio.to_thread(_write_private, out, data)
    return len(data)


async def restore(target: Target, backup_password: str, source: Path, stream: TextIO | None = None) -> int:
    """Log in, send the blob (bytes counted on the line), wait for coreapp; the number of bytes sent."""
    data = (await asyncio.to_thread(source.read_bytes)).decode().strip()
    payload = json.dumps({"password": backup_password, "data": data}).encode()
    step = Step("logging in")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), CHUNK):
            piece = payload[start : start + CHUNK]
            yield piece
            step.sent += len(piece)

    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with (
        Progress("restore", stream).ticking(step.render, keep=False),
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        token = await _login(session, target)
        step.text, step.total = "coreapp is decrypting and restarting the chat connection", len(payload)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Length": str(len(payload)),
        }
        url = f"{target.url}/v1/settings/restore"
        async with session.post(url, data=chunks(), headers=headers, ssl=target.ssl) as resp:
            answer = await _json(resp)
            if resp.status != 200:
                raise CliError(f"restore refused: {_errors(resp.status, answer)}")
    return len(payload)


def main(command: str, args: argparse.Namespace) -> int:
    """``openprem backup|restore``: 0 done, 1 refused or unreachable."""
    try:
        password = _secret(PASSWORD_ENV, f"password of {args.user}: ")
        target = Target(args.url.rstrip("/"), args.user, password, _ssl(args))
        if command == "backup":
            secret = _secret(BACKUP_PASSWORD_ENV, "backup password (8+ characters): ", confirm=True)
            size = asyncio.run(backup(target, secret, args.file))
            print(f"backup: wrote {size:,} bytes to {args.file}")
        else:
            secret = _secret(BACKUP_PASSWORD_ENV, "backup password: ")
            size = asyncio.run(restore(target, secret, args.file))
            print(f"restore: {args.file} restored ({size:,} bytes)")
        return 0
    except CliError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
    except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as exc:
        print(f"{command}: {args.url}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1
