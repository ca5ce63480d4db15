"""``contacts.check`` against a real chatd and database: formats, wait / no_wait, the cache, its TTL, 1011."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from coreapp.services import contacts as contacts_service
from shared.config import DbSettings
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register

BLOCKED = "12025550177"
NOBODY = "12025550100"


async def _ready_core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings) -> Core:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    await sandbox.admin("POST", "/admin/phones", {"wa_id": BLOCKED, "name": "Blocker", "online": False})
    await sandbox.admin("PATCH", f"/admin/phones/{BLOCKED}", {"blocked": True})
    core = await make_core(db)
    await register(core, sandbox)
    return core


async def _check(core: Core, contacts: list[str], **options: Any) -> list[dict[str, Any]]:
    payload: dict[str, Any] = {"contacts": contacts, **options}
    return list((await core.rpc("contacts.check", payload))["contacts"])


def _by_input(answers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["input"]: a for a in answers}


async def test_wait_answers_every_format(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    inputs = [
        "+1 (202) 555-0199",  # formatted
        PHONE,  # digits with the country code, no "+"
        "1-202-555-0199",
        f"+{BLOCKED}",  # blocked the business and offline: still a WhatsApp user (SANDBOX.md)
        f"+{NOBODY}",  # possible number, no phone behind it
        BUSINESS_WA_ID,  # a business is a WhatsApp user too
        "not a number",
        "+1 555",  # too short to exist
        "2025550199",  # no country code: read as +20 …, nobody there
    ]
    answers = await _check(core, inputs, blocking="wait")
    assert [a["input"] for a in answers] == inputs  # one answer per input, in order
    got = _by_input(answers)
    for valid, wa_id in [("+1 (202) 555-0199", PHONE), (PHONE, PHONE), ("1-202-555-0199", PHONE)]:
        assert got[valid] == {"input": valid, "status": "valid", "wa_id": wa_id}
    assert got[f"+{BLOCKED}"] == {"input": f"+{BLOCKED}", "status": "valid", "wa_id": BLOCKED}
    assert got[BUSINESS_WA_ID]["status"] == "valid"
    for invalid in [f"+{NOBODY}", "not a number", "+1 555", "2025550199"]:
        assert got[invalid] == {"input": invalid, "status": "invalid"}  # no wa_id unless valid


async def test_cache_force_check_and_ttl(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    assert (await _check(core, [PHONE], blocking="wait"))[0]["status"] == "valid"

    # The user changes number: the network now says invalid, the cache still says valid.
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"changed_number": True})
    assert (await _check(core, [PHONE], blocking="wait"))[0]["status"] == "valid"
    assert (await _check(core, [PHONE]))[0]["status"] == "valid"  # no_wait serves the cache too
    # force_check goes to the network (and refreshes the cache).
    assert await _check(core, [PHONE], blocking="wait", force_check=True) == [{"input": PHONE, "status": "invalid"}]
    assert (await _check(core, [PHONE], blocking="wait"))[0]["status"] == "invalid"

    # Back on the network: cached "invalid" holds until the TTL has passed.
    await sandbox.admin("PATCH", f"/admin/phones/{PHONE}", {"changed_number": False})
    real_now = contacts_service.utcnow

    def later(delta: timedelta) -> None:
        monkeypatch.setattr(contacts_service, "utcnow", lambda: real_now() + delta)

    later(contacts_service.CACHE_TTL - timedelta(minutes=1))
    assert (await _check(core, [PHONE], blocking="wait"))[0]["status"] == "invalid"
    later(contacts_service.CACHE_TTL + timedelta(minutes=1))
    assert (await _check(core, [PHONE], blocking="wait"))[0] == {"input": PHONE, "status": "valid", "wa_id": PHONE}


async def test_no_wait_answers_processing_then_resolves(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await _ready_core(sandbox, make_core, backend)
    inputs = [f"+{PHONE}", f"+{NOBODY}", "garbage"]
    first = await _check(core, inputs)  # blocking defaults to no_wait
    assert first == [
        {"input": f"+{PHONE}", "status": "processing"},
        {"input": f"+{NOBODY}", "status": "processing"},
        {"input": "garbage", "status": "invalid"},  # needs no network
    ]

    async def resolved() -> list[dict[str, Any]] | None:
        answers = await _check(core, inputs, blocking="no_wait")
        return None if any(a["status"] == "processing" for a in answers) else answers

    answers = await eventually(resolved, timeout_s=10)
    assert answers[0] == {"input": f"+{PHONE}", "status": "valid", "wa_id": PHONE}
    assert answers[1] == {"input": f"+{NOBODY}", "status": "invalid"}
    # force_check with no_wait bypasses the cache: processing again, then resolved again.
    assert (await _check(core, [f"+{PHONE}"], force_check=True))[0]["status"] == "processing"


async def test_not_registered_is_1011(make_core: CoreFactory, sqlite_db: DbSettings) -> None:
    core = await make_core(sqlite_db)
    for blocking in ("wait", "no_wait"):
        with pytest.raises(ApiError) as err:
            await _check(core, [PHONE], blocking=blocking)
        assert err.value.code is ErrorCode.NOT_READY


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, ErrorCode.MISSING_PARAMETER),
        ({"contacts": []}, ErrorCode.INVALID_PARAMETER),
        ({"contacts": [1]}, ErrorCode.INVALID_PARAMETER),
        ({"contacts": ["1"], "blocking": "later"}, ErrorCode.INVALID_PARAMETER),
        ({"contacts": ["1"], "force_check": "yes"}, ErrorCode.INVALID_PARAMETER),
    ],
)
async def test_rpc_payload_checks(
    make_core: CoreFactory, sqlite_db: DbSettings, payload: dict[str, Any], code: ErrorCode
) -> None:
    core = await make_core(sqlite_db)
    with pytest.raises(ApiError) as err:
        await core.rpc("contacts.check", payload)
    assert err.value.code is code


def test_normalise() -> None:
    norm = contacts_service.normalise
    assert norm("+1 (516) 283-7151") == "15162837151"
    assert norm("15162837151") == "15162837151"
    assert norm(" 1-516-283-7151 ") == "15162837151"
    assert norm("+44 20 7946 0958") == "442079460958"
    assert norm("+39 06 1234 5678") == "390612345678"  # Italian leading zero kept
    for bad in ["", "   ", "abc", "+1 555", "+999 123456", "+" + "1" * 20]:
        assert norm(bad) is None, bad
