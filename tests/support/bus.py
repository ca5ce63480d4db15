"""Bus helpers for tests that play coreapp (or a caller) with plain JSON objects instead of the typed contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from shared.bus.base import RawHandler

JsonHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def json_handler(handler: JsonHandler) -> RawHandler:
    """A ``RawHandler`` around ``(method, JSON object) -> JSON object``: what a fake coreapp finds easiest."""

    async def raw(method: str, payload: bytes) -> bytes:
        return orjson.dumps(await handler(method, orjson.loads(payload)))

    return raw
