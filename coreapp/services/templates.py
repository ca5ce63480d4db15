"""Template cache: replaced from the network at every login (a SYNCING step) and when it gets old.

Age is measured on the network's clock (``LoginOk``/``Pong`` server time), not ours: an approval the network
makes after a delay must show up here within ``REFRESH_S`` of network time, and in the sandbox that clock can be
advanced.  ``refresh`` runs on every answered ping (``ChatConnection.add_tick``).
"""

from __future__ import annotations

import logging

import orjson

from coreapp.chat.link import ChatLink
from coreapp.chat.session import expect
from coreapp.models import TemplateRecord
from coreapp.storage.templates import TemplateStore
from shared.wire.frames import GetTemplates, LoginOk, Templates

log = logging.getLogger("openprem.coreapp.templates")

REFRESH_S = 10 * 60.0
"""Re-sync a cache older than this (network time): half the longest approval delay (20 minutes)."""


class TemplateService:
    def __init__(self, store: TemplateStore, link: ChatLink) -> None:
        self._store = store
        self._link = link
        self._synced_at: float | None = None
        """Network time of the last sync."""

    async def sync(self, login: LoginOk) -> None:
        await self._sync(login.server_time)

    async def refresh(self, server_now: float) -> None:
        """Sync again when the cache is ``REFRESH_S`` old by the network's clock."""
        if self._synced_at is None or server_now - self._synced_at >= REFRESH_S:
            log.info("template cache is older than %.0f minutes (network time): syncing", REFRESH_S / 60)
            await self._sync(server_now)

    async def _sync(self, server_now: float) -> None:
        reply = expect(await self._link.request(GetTemplates()), Templates)
        records = {
            (t.namespace, t.name, t.language): TemplateRecord(
                namespace=t.namespace,
                name=t.name,
                language=t.language,
                status=t.status,
                category=t.category,
                components_json=orjson.dumps(t.components).decode(),
            )
            for t in reply.templates
        }
        await self._store.replace_all(list(records.values()))
        self._synced_at = server_now
        log.info("templates synced: %d", len(records))

    async def list_all(self) -> list[TemplateRecord]:
        return await self._store.list_all()
