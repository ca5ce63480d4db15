"""coreapp serves exactly the methods of the bus contract: none missing, none beside it."""

from __future__ import annotations

from shared.bus.contract import BY_NAME
from tests.contract.conftest import Live


async def test_coreapp_serves_every_contract_method(live: Live) -> None:
    assert live.core.api.names == frozenset(BY_NAME)
