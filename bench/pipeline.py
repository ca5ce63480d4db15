"""Where messages wait: outbound messages by status and the webhook outbox size, sampled from coreapp's DB.

Read-only diagnostics for the report (``SELECT status, COUNT(*)`` and ``SELECT COUNT(*)`` every few seconds).
A schema the queries no longer fit turns the sampler off with a note; it never fails the run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from shared.config import DbSettings
from shared.db.engine import Database
from shared.tasks import first_completed

_STATUS = text("SELECT status, COUNT(*) FROM messages WHERE direction = 'out' GROUP BY status")
_OUTBOX = text("SELECT COUNT(*) FROM webhook_outbox")


class PipelineSampler:
    """``run()`` until ``stop`` is set; ``samples`` holds ``{"t", "outbox", <status>: count}``."""

    def __init__(self, settings: DbSettings, every_s: float = 2.0) -> None:
        self._settings = settings
        self._every = every_s
        self.samples: list[dict[str, Any]] = []
        self.error: str | None = None
        self._wake = asyncio.Event()
        self._tag: str | None = None

    def poke(self, tag: str) -> None:
        """Take a sample now, marked with ``tag`` (e.g. when the last API call returned)."""
        self._tag = tag
        self._wake.set()

    async def sample(self, db: Database, t0: float) -> dict[str, Any]:
        async with db.engine.connect() as conn:
            row: dict[str, Any] = {"t": round(time.monotonic() - t0, 1)}
            row.update({str(s): int(n) for s, n in (await conn.execute(_STATUS)).all()})
            row["outbox"] = int((await conn.execute(_OUTBOX)).scalar_one())
            await conn.rollback()
        return row

    async def run(self, stop: asyncio.Event) -> None:
        try:
            db = await Database.connect(self._settings)
        except (SQLAlchemyError, OSError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            return
        t0 = time.monotonic()
        try:
            while not stop.is_set():
                tag, self._tag = self._tag, None
                self._wake.clear()
                try:
                    row = await self.sample(db, t0)
                except SQLAlchemyError as exc:
                    self.error = f"{type(exc).__name__}: {exc}"[:300]
                    return
                if tag:
                    row["tag"] = tag
                self.samples.append(row)
                await first_completed(stop.wait(), self._wake.wait(), asyncio.sleep(self._every))
        finally:
            await db.close()

    def summary(self) -> dict[str, Any]:
        tagged = {s["tag"]: s for s in self.samples if "tag" in s}
        return {
            "every_s": self._every,
            "error": self.error,
            "at_send_end": tagged.get("send_end"),
            "max_outbox": max((s["outbox"] for s in self.samples), default=None),
            "samples": self.samples,
        }
