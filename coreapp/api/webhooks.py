"""RPC methods of the webhook delivery log (``GET /v1/webhooks/log``) and the dead-letter list
(``GET /v1/webhooks/dead``, ``POST /v1/webhooks/dead[/{event_id}]/replay``)."""

from __future__ import annotations

from coreapp.api.registry import RpcRegistry
from coreapp.storage.webhooks import WebhookStore
from coreapp.webhooks.dispatcher import WebhookDispatcher
from shared.bus.contract import ops
from shared.ids import EventId


class WebhooksApi:
    def __init__(self, store: WebhookStore, dispatcher: WebhookDispatcher) -> None:
        self._store = store
        self._dispatcher = dispatcher

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(ops.WEBHOOK_LOG, self.get_log)
        registry.add(ops.WEBHOOK_DEAD, self.list_dead)
        registry.add(ops.WEBHOOK_REPLAY, self.replay)

    async def get_log(self, request: ops.LogQuery) -> ops.WebhookLog:
        return ops.WebhookLog(log=await self._store.read_log(request.limit))

    async def list_dead(self, request: ops.LogQuery) -> ops.DeadWebhooks:
        dead, total = await self._store.list_dead(request.limit)
        return ops.DeadWebhooks(dead=dead, total=total)

    async def replay(self, request: ops.ReplayRequest) -> ops.Replayed:
        """Through the dispatcher: it logs the replay and wakes up to deliver at once."""
        event_id = EventId(request.event_id) if request.event_id is not None else None
        replayed, remaining = await self._dispatcher.dead.replay(event_id, request.limit)
        return ops.Replayed(replayed=replayed, remaining=remaining)
