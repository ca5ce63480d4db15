"""RPC method of the webhook delivery log (``GET /v1/webhooks/log``)."""

from __future__ import annotations

from coreapp.api.registry import RpcRegistry
from coreapp.storage.webhooks import WebhookStore
from shared.bus.contract import ops


class WebhooksApi:
    def __init__(self, store: WebhookStore) -> None:
        self._store = store

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(ops.WEBHOOK_LOG, self.get_log)

    async def get_log(self, request: ops.LogQuery) -> ops.WebhookLog:
        return ops.WebhookLog(log=await self._store.read_log(request.limit))
