"""The webapp → coreapp contract: every RPC as a typed ``Method`` (``shared.bus.rpc``), grouped by API area.

``METHODS`` lists them all in the order of ``docs/contracts.md`` §3, which is generated from this package
(``python -m shared.bus.contract``) and checked against it by ``tests/unit/test_bus_contract.py``.
"""

from __future__ import annotations

from typing import Any

from shared.bus.contract import account, contacts, health, messages, ops, settings
from shared.bus.rpc import Method

METHODS: tuple[Method[Any, Any], ...] = (
    health.HEALTH,
    account.REGISTER,
    account.VERIFY,
    settings.GET_APPLICATION,
    settings.PATCH_APPLICATION,
    settings.RESET_APPLICATION,
    messages.SEND,
    messages.MARK_READ,
    account.SET_TWO_STEP,
    account.REMOVE_TWO_STEP,
    account.GET_SHARDS,
    account.SET_SHARDS,
    contacts.CHECK,
    contacts.GET_IDENTITY,
    contacts.ACK_IDENTITY,
    settings.GET_MEDIA_PROVIDERS,
    settings.POST_MEDIA_PROVIDERS,
    settings.DELETE_MEDIA_PROVIDER,
    settings.GET_PROFILE_ABOUT,
    settings.SET_PROFILE_ABOUT,
    settings.GET_PROFILE_PHOTO,
    settings.SET_PROFILE_PHOTO,
    settings.DELETE_PROFILE_PHOTO,
    settings.GET_BUSINESS_PROFILE,
    settings.SET_BUSINESS_PROFILE,
    settings.GET_COMPLIANCE_INFO,
    settings.SET_COMPLIANCE_INFO,
    settings.BACKUP,
    settings.RESTORE,
    settings.GET_WEBHOOKS_CA,
    settings.SET_WEBHOOKS_CA,
    settings.DELETE_WEBHOOKS_CA,
    ops.STATS_APP,
    ops.STATS_DB,
    ops.SUPPORT,
    messages.GC,
    ops.WEBHOOK_LOG,
    ops.WEBHOOK_DEAD,
    ops.WEBHOOK_REPLAY,
)

BY_NAME: dict[str, Method[Any, Any]] = {method.name: method for method in METHODS}
assert len(BY_NAME) == len(METHODS), "two methods share a name"
