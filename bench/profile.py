"""Sampling profiles of our processes during the measured phase, with py-spy, and a digest of where CPU goes.

``py-spy record --format raw --nonblocking`` writes collapsed stacks (``frame;frame;... count``) for each pid
until SIGINT.  The digest attributes each sample to a category (crypto, DB, bus, HTTP, TLS, JSON, logging...)
by the innermost frame that belongs to one, and lists the hottest functions.  Idle time is not sampled, so the
percentages are of the process's busy CPU.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (category, path fragments); the first matching category of the innermost matching frame wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("logging", ("/logging/", "structlog", "shared/logging")),
    ("crypto (Signal, AEAD, keys)", ("x3dh", "doubleratchet", "xeddsa", "cryptography", "shared/wire/e2e", "nacl")),
    ("TLS", ("/ssl.py", "sslproto.py")),
    ("JSON / validation", ("/json/", "orjson", "msgspec", "pydantic")),
    ("DB (SQLAlchemy, driver)", ("sqlalchemy", "asyncmy", "psycopg", "aiosqlite", "shared/db/")),
    ("bus (MQTT)", ("aiomqtt", "paho", "shared/bus/")),
    ("HTTP (aiohttp)", ("aiohttp", "multidict", "yarl")),
    ("wire codec (chat)", ("shared/wire/",)),
    ("asyncio loop", ("asyncio/",)),
]
OUR_CODE = ("coreapp/", "webapp/", "shared/", "chatd/", "openprem/")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return found if Path(found).exists() else None


@dataclass
class Recording:
    name: str
    output: Path
    proc: subprocess.Popen[bytes]


class Profiler:
    """One ``py-spy record`` per process; ``stop()`` ends them all and returns the digests."""

    def __init__(self, outdir: Path, rate: int = 100) -> None:
        self.outdir = outdir
        self.rate = rate
        self.recordings: list[Recording] = []

    def start(self, pids: dict[str, int]) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
        self.outdir.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            output = self.outdir / f"{name}.collapsed.txt"
            argv = [binary, "record", "--pid", str(pid), "--rate", str(self.rate), "--format", "raw"]
            argv += ["--nonblocking", "--output", str(output)]
            log = (self.outdir / f"{name}.py-spy.log").open("wb")
            self.recordings.append(Recording(name, output, subprocess.Popen(argv, stdout=log, stderr=log)))
            log.close()

    def stop(self, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
        for rec in self.recordings:
            if rec.proc.poll() is None:
                rec.proc.send_signal(signal.SIGINT)
        digests: dict[str, dict[str, Any]] = {}
        for rec in self.recordings:
            try:
                rec.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                rec.proc.kill()
                rec.proc.wait()
            if rec.output.exists():
                digests[rec.name] = digest(rec.output.read_text(errors="replace"))
                digests[rec.name]["file"] = str(rec.output)
        return digests


def _frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) per frame, outermost first; thread/process pseudo-frames are dropped."""
    out = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw.strip())
        if m and m.group("line") is not None:
            out.append((m.group("func"), m.group("file")))
    return out


def _category(file: str) -> str | None:
    for name, fragments in CATEGORIES:
        if any(f in file for f in fragments):
            return name
    return None


def _short(func: str, file: str) -> str:
    for root in OUR_CODE:
        i = file.find(root)
        if i >= 0:
            return f"{func} ({file[i:]})"
    i = file.find("site-packages/")
    return f"{func} ({file[i + 14 :] if i >= 0 else Path(file).name})"


def digest(collapsed: str, top: int = 15) -> dict[str, Any]:
    """Category shares, hottest leaf functions and hottest functions of our code (inclusive)."""
    total = 0
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = _frames(stack)
        if not frames:
            continue
        total += count
        leaves[_short(*frames[-1])] += count
        category = None
        for _func, file in reversed(frames):
            category = _category(file)
            if category is not None and category != "asyncio loop":
                break
        if category is None or category == "asyncio loop":
            leaf_file = frames[-1][1]
            if any(r in leaf_file for r in OUR_CODE):
                category = "our code (pure Python)"
            elif category is None:
                category = "other (stdlib, libraries)"
        categories[category] += count
        for func, file in {f for f in frames if any(r in f[1] for r in OUR_CODE)}:
            ours[_short(func, file)] += count

    def shares(counter: Counter[str], n: int) -> list[list[Any]]:
        return [[k, round(v * 100 / total, 1)] for k, v in counter.most_common(n)] if total else []

    for name, count in list(ours.items()):
        if count >= 0.75 * total:  # entry points (main, run_process...): inclusive of everything, say nothing
            del ours[name]
    return {
        "samples": total,
        "categories_pct": shares(categories, len(categories)),
        "top_leaf_pct": shares(leaves, top),
        "top_our_functions_inclusive_pct": shares(ours, top),
    }
