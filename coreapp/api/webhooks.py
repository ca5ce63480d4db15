"""RPC methods of the webhook delivery log (``GET /v1/webhooks/log``).  Mounted with ``RpcApi.add_routes``."""

from __future__ import annotations

from collections.abc import Mapping

from coreapp.api.handlers import Handler
from coreapp.storage.webhooks import WebhookStore
from shared.bus.base import Payload
from shared.errors import ApiError, ErrorCode

LOG_LIMIT_DEFAULT = 100
LOG_LIMIT_MAX = 1000


def webhooks_routes(store: WebhookStore) -> Mapping[str, Handler]:
    """What ``CoreApp`` mounts with ``RpcApi.add_routes``."""

    async def get_log(payload: Payload) -> Payload:
        limit = payload.get("limit", LOG_LIMIT_DEFAULT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LOG_LIMIT_MAX:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"limit must be an integer from 1 to {LOG_LIMIT_MAX}")
        return {"log": [entry.to_json() for entry in await store.read_log(limit)]}

    return {"webhooks.get_log": get_log}
