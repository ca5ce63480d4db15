"""Application settings: PATCH merges, validation maps to 1009, reset, persistence, JSON helpers."""

from __future__ import annotations

import pytest

from coreapp.storage.settings import SettingsStore
from shared.appsettings import ApplicationSettings
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode


async def test_defaults_when_nothing_stored(settings_store: SettingsStore) -> None:
    assert await settings_store.get_application() == ApplicationSettings()


async def test_patch_keeps_other_keys(db: Database, settings_store: SettingsStore) -> None:
    await settings_store.patch_application({"webhooks": {"url": "https://hooks.example/a"}, "sent_status": True})
    new = await settings_store.patch_application(
        {"webhooks": {"message": {"read": False}}, "callback_backoff_delay_ms": "500"}
    )
    assert new.webhooks.url == "https://hooks.example/a"
    assert new.webhooks.message.read is False
    assert new.webhooks.message.delivered is True
    assert new.sent_status is True
    assert new.callback_backoff_delay_ms == 500
    # A fresh store (another process start) reads the same thing from the DB, not from a cache.
    assert await SettingsStore(db).get_application() == new


async def test_bad_value_is_1009_and_changes_nothing(db: Database, settings_store: SettingsStore) -> None:
    await settings_store.patch_application({"webhooks": {"url": "https://hooks.example/a"}})
    before = await settings_store.get_application()
    for bad in (
        {"webhooks": {"max_concurrent_requests": 7}},
        {"no_such_key": 1},
        {"callback_backoff_delay_ms": "soon"},
    ):
        with pytest.raises(ApiError) as info:
            await settings_store.patch_application(bad)
        assert info.value.code is ErrorCode.INVALID_PARAMETER
        assert info.value.code.code == 1009
        assert info.value.details
    assert await settings_store.get_application() == before
    assert await SettingsStore(db).get_application() == before


async def test_reset_restores_defaults(db: Database, settings_store: SettingsStore) -> None:
    await settings_store.patch_application({"webhooks": {"url": "https://hooks.example/a"}, "pass_through": True})
    seen: list[ApplicationSettings] = []
    settings_store.add_listener(seen.append)
    assert await settings_store.reset_application() == ApplicationSettings()
    assert await settings_store.get_application() == ApplicationSettings()
    assert await SettingsStore(db).get_application() == ApplicationSettings()
    assert seen == [ApplicationSettings()]


async def test_stale_stored_key_does_not_take_the_rest_down(db: Database, settings_store: SettingsStore) -> None:
    await settings_store.patch_application({"webhooks": {"url": "https://hooks.example/a"}})
    # Simulate a key an older release stored and this one no longer knows.
    stored = await settings_store.get("application")
    assert isinstance(stored, dict)
    stored["retired_key"] = True
    await db.run("test.write", lambda conn: settings_store._put_txn(conn, "application", stored))
    assert (await SettingsStore(db).get_application()).webhooks.url == "https://hooks.example/a"


async def test_generic_json_values(settings_store: SettingsStore) -> None:
    assert await settings_store.get("registration") is None
    await settings_store.put("registration", {"cc": "1", "numbers": [1, 2], "ok": True, "text": "é\u0000"})
    assert await settings_store.get("registration") == {"cc": "1", "numbers": [1, 2], "ok": True, "text": "é\u0000"}
    await settings_store.put("registration", "replaced")
    assert await settings_store.get("registration") == "replaced"
    with pytest.raises(ValueError):
        await settings_store.put("application", {})
