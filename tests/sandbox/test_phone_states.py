"""SANDBOX.md "Behaviours to reproduce", phone side: each row set up through chatd's admin API, and what the
client shows for it (the API answer, the status webhooks with their error codes, health, the log)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from chatd.policy import TOS_URL
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings
from tests.coreapp.conftest import BUSINESS_WA_ID, Core, CoreFactory, Sandbox, eventually, register
from tests.sandbox.statuses import statuses, wait_statuses

PHONE = "12025550199"
QUIET_S = 0.6
"""How long to watch for a status that must not come (receipts come after 0.05 s here)."""


async def _core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings, *phones: dict[str, Any]) -> Core:
    for phone in phones or ({"wa_id": PHONE},):
        await sandbox.admin("POST", "/admin/phones", {"name": "Kerry Fisher", **phone})
    core = await make_core(db)
    await register(core, sandbox)
    await core.rpc("settings.patch_application", {"application": {"sent_status": True}})
    return core


async def _send(core: Core, to: str = PHONE, body: str = "hello", **content: Any) -> str:
    payload = content or {"type": "text", "text": {"body": body}}
    reply = await core.rpc("messages.send", {"to": to, "recipient_type": "individual", **payload})
    return str(reply["id"])  # the API answer: accepted with an id, whatever happens on the network


async def _settled(core: Core, message_id: str, *expected: str) -> list[dict[str, Any]]:
    """``expected`` and nothing more, even after a while."""
    await wait_statuses(core, message_id, *expected)
    await asyncio.sleep(QUIET_S)
    return await wait_statuses(core, message_id, *expected)


async def _inbox_ids(sandbox: Sandbox, wa_id: str = PHONE) -> set[str]:
    return {m["id"] for m in (await sandbox.admin("GET", f"/admin/phones/{wa_id}/inbox"))["messages"]}


def _failed(statuses: list[dict[str, Any]]) -> dict[str, Any]:
    (failed,) = [s for s in statuses if s["status"] == "failed"]
    (error,) = failed["errors"]
    return dict(error)


async def test_offline_phone_gets_it_when_back_and_never_after_30_days(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    core = await _core(sandbox, make_core, backend, {"wa_id": PHONE, "online": False})
    first = await _send(core)
    await _settled(core, first, "sent")
    assert (await sandbox.admin("GET", f"/admin/phones/{PHONE}"))["held_count"] == 1
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})
    await wait_statuses(core, first, "sent", "delivered", "read")

    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": False})
    lost = await _send(core, body="you will never see this")
    await wait_statuses(core, lost, "sent")
    with caplog.at_level(logging.INFO, logger="openprem.chatd.delivery"):
        await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 30 * 86400 + 60})
    assert "offline 30 days" in caplog.text
    assert (await sandbox.admin("GET", f"/admin/phones/{PHONE}"))["held_count"] == 0
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"online": True})
    after = await _send(core, body="back")  # queued behind nothing: once it is delivered, ``lost`` is settled
    await wait_statuses(core, after, "sent", "delivered", "read")
    assert [s["status"] for s in await statuses(core, lost)] == ["sent"]
    assert lost not in await _inbox_ids(sandbox)
    assert await core.health() == "connected"


async def test_phone_that_blocked_the_business_never_gets_it(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"blocked": True})
    message_id = await _send(core)
    await _settled(core, message_id, "sent")
    assert message_id not in await _inbox_ids(sandbox)
    contacts = (await core.rpc("contacts.check", {"contacts": [f"+{PHONE}"], "blocking": "wait"}))["contacts"]
    assert [(c["status"], c.get("wa_id")) for c in contacts] == [("valid", PHONE)]


@pytest.mark.parametrize("wa_id", ["5351234567", "989121234567", "8501912345678", "963944123456", "79781234567"])
async def test_phone_in_a_sanctioned_country_never_gets_it(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, wa_id: str
) -> None:
    core = await _core(sandbox, make_core, backend, {"wa_id": wa_id})
    message_id = await _send(core, to=wa_id)
    await _settled(core, message_id, "sent")
    assert message_id not in await _inbox_ids(sandbox, wa_id)


async def test_turkish_numbers_follow_the_policy_switch(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    turkish = "905321234567"
    core = await _core(sandbox, make_core, backend, {"wa_id": turkish})
    assert (await sandbox.admin("GET", "/admin/policy"))["turkey"] == "allowed"  # since 2024-05-15
    allowed = await _send(core, to=turkish)
    await wait_statuses(core, allowed, "sent", "delivered", "read")

    assert (await sandbox.admin("PATCH", "/admin/policy", {"turkey": "restricted"}))["turkey"] == "restricted"
    restricted = await _send(core, to=turkish)
    await _settled(core, restricted, "sent")
    assert restricted not in await _inbox_ids(sandbox, turkish)


async def test_terms_of_service_not_accepted_fails_naming_the_link(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"terms_accepted": False})
    message_id = await _send(core)
    error = _failed(await _settled(core, message_id, "sent", "failed"))
    assert error["code"] == 1026 and error["title"] == "Receiver incapable"
    assert TOS_URL in error["details"]
    assert message_id not in await _inbox_ids(sandbox)


@pytest.mark.parametrize(
    ("version", "incapable"),
    [
        ("android 2.21.15.14", True),
        ("SMBA 2.21.15.15", False),
        ("iOS 2.21.170.3", True),
        ("smbi 2.21.170.4", False),
        ("kaios 2.2130.9", True),
        ("web 2.2132.6", False),
        ("web 2.2131.99", True),
    ],
)
async def test_old_client_is_receiver_incapable(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, version: str, incapable: bool
) -> None:
    core = await _core(sandbox, make_core, backend, {"wa_id": PHONE})
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"client_version": version})
    message_id = await _send(core)
    if incapable:
        error = _failed(await _settled(core, message_id, "sent", "failed"))
        assert (error["code"], error["title"]) == (1026, "Receiver incapable")
        assert message_id not in await _inbox_ids(sandbox)
    else:
        await wait_statuses(core, message_id, "sent", "delivered", "read")


async def test_phone_in_an_experiment_group_fails_with_472(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _core(sandbox, make_core, backend)
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"experiment": True})
    message_id = await _send(core)
    error = _failed(await _settled(core, message_id, "sent", "failed"))
    assert (error["code"], error["title"]) == (472, "User's number is part of an experiment")
    assert message_id not in await _inbox_ids(sandbox)


async def test_two_devices_one_failing_reports_delivered_and_failed(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    core = await _core(sandbox, make_core, backend, {"wa_id": PHONE, "devices": 2})
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"devices_failing": [1], "auto_read": False})
    message_id = await _send(core)
    statuses = await _settled(core, message_id, "sent", "delivered", "failed")
    assert _failed(statuses)["code"] == 500
    (received,) = [m for m in (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]]
    assert received["id"] == message_id and received["device_id"] == 0  # only the device that decrypted it

    # The ladder still holds after the failure: the user reads it on the working device.
    await sandbox.admin("POST", f"/admin/phones/{PHONE}/read", {"id": message_id})
    await _settled(core, message_id, "sent", "delivered", "failed", "read")

    # Both devices working again: one delivered, no failure.
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"devices_failing": []})
    fine = await _send(core)
    await _settled(core, fine, "sent", "delivered")


async def test_free_form_outside_24h_fails_with_470_templates_still_go(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    await sandbox.admin(
        "POST",
        "/admin/templates",
        {
            "namespace": "openprem_demo",
            "name": "hello_world",
            "language": "en",
            "components": [{"type": "BODY", "text": "Hello"}],
        },
    )
    core = await _core(sandbox, make_core, backend)
    assert (await sandbox.admin("GET", "/admin/policy"))["reengagement_window"] is False  # the default
    await sandbox.admin("PATCH", "/admin/policy", {"reengagement_window": True})

    never_wrote = await _send(core)
    error = _failed(await _settled(core, never_wrote, "sent", "failed"))
    assert (error["code"], error["title"]) == (470, "Re-engagement message")
    template = {
        "namespace": "openprem_demo",
        "name": "hello_world",
        "language": {"policy": "deterministic", "code": "en"},
        "components": [],
    }
    sent_template = await _send(core, type="template", template=template)
    await wait_statuses(core, sent_template, "sent", "delivered", "read")

    await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": "hi"}}
    )
    within = await _send(core)
    await wait_statuses(core, within, "sent", "delivered", "read")

    await sandbox.admin("POST", "/admin/clock/advance", {"seconds": 24 * 3600 + 60})
    late = await _send(core)
    assert _failed(await _settled(core, late, "sent", "failed"))["code"] == 470
    assert never_wrote not in await _inbox_ids(sandbox) and late not in await _inbox_ids(sandbox)
    assert await core.health() == "connected"


async def _system_hooks(core: Core) -> list[dict[str, Any]]:
    async with core.app.db.engine.connect() as conn:
        rows = list(await conn.execute(select(webhook_outbox.c.body).where(webhook_outbox.c.kind == "inbound_message")))
    return [m for r in rows for m in orjson.loads(r.body)["messages"] if m["type"] == "system"]


async def test_reinstalled_phone_raises_a_security_notice_and_gets_the_next_message(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    core = await _core(sandbox, make_core, backend)
    before = await _send(core)
    await wait_statuses(core, before, "sent", "delivered", "read")
    old_key = (await sandbox.admin("GET", f"/admin/phones/{PHONE}"))["devices"][0]["identity_key"]

    with caplog.at_level(logging.INFO, logger="openprem.coreapp.keys"):
        reinstalled = await sandbox.admin("POST", f"/admin/phones/{PHONE}/reinstall")
        assert reinstalled["notified"] == [BUSINESS_WA_ID]
        assert reinstalled["devices"][0]["identity_key"] != old_key
        (notice,) = await eventually(lambda: _system_hooks(core))
    assert f"identity of {PHONE} changed; its sessions were reset" in caplog.text
    assert notice["from"] == PHONE and "contacts" not in notice
    assert notice["system"]["type"] == "user_identity_changed"
    assert notice["system"]["body"] and notice["identity"]["hash"] == notice["system"]["identity"]
    assert notice["identity"]["acknowledged"] is False  # sends answer 1028 until acknowledged (test_phones_people)
    await core.rpc("contacts.ack_identity", {"wa_id": PHONE, "hash": notice["identity"]["hash"]})

    after = await _send(core, body="after the reinstall")  # a new session with the new keys
    await wait_statuses(core, after, "sent", "delivered", "read")
    assert after in await _inbox_ids(sandbox)

    # show_security_notifications off: sessions still reset, no notice.
    await core.rpc("settings.patch_application", {"application": {"show_security_notifications": False}})
    await sandbox.admin("POST", f"/admin/phones/{PHONE}/reinstall")
    again = await _send(core, body="and again")
    await wait_statuses(core, again, "sent", "delivered", "read")
    assert len(await _system_hooks(core)) == 1


async def test_changed_number_makes_the_old_one_invalid(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    new_number = "12025550177"
    core = await _core(sandbox, make_core, backend)
    before = await _send(core)
    await wait_statuses(core, before, "sent", "delivered", "read")

    moved = await sandbox.admin("POST", f"/admin/phones/{PHONE}/change-number", {"new_wa_id": new_number})
    assert moved["changed_number"] is True and moved["new_wa_id"] == new_number
    (notice,) = await eventually(lambda: _system_hooks(core))
    assert notice["from"] == PHONE
    assert notice["system"]["type"] == "user_changed_number" and notice["system"]["new_wa_id"] == new_number

    contacts = (await core.rpc("contacts.check", {"contacts": [f"+{PHONE}", f"+{new_number}"], "blocking": "wait"}))[
        "contacts"
    ]
    assert {c["input"]: c["status"] for c in contacts} == {f"+{PHONE}": "invalid", f"+{new_number}": "valid"}
    to_old = await _send(core)
    error = _failed(await _settled(core, to_old, "failed"))
    assert (error["code"], error["title"]) == (1013, "User is not valid")
    to_new = await _send(core, to=new_number)
    await wait_statuses(core, to_new, "sent", "delivered", "read")
