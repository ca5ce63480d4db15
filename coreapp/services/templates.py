"""Template cache: replaced from the network at every login (a SYNCING step)."""

from __future__ import annotations

import logging

import orjson

from coreapp.chat.link import ChatLink
from coreapp.chat.session import expect
from coreapp.models import TemplateRecord
from coreapp.storage.templates import TemplateStore
from shared.wire.frames import GetTemplates, LoginOk, Templates

log = logging.getLogger("openprem.coreapp.templates")


class TemplateService:
    def __init__(self, store: TemplateStore, link: ChatLink) -> None:
        self._store = store
        self._link = link

    async def sync(self, _login: LoginOk) -> None:
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
        log.info("templates synced: %d", len(records))

    async def list_all(self) -> list[TemplateRecord]:
        return await self._store.list_all()
