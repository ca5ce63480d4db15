"""Backups: scrypt N = 2**17 recorded in the blob header, backups of the old format (N = 2**15) still restore, and a
new backup's password has at least 8 characters."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import DbSettings
from shared.errors import ApiError
from shared.profiles import ROW_ABOUT
from tests.coreapp.conftest import CoreFactory
from webapp.envelope import ValidationFailed, validate
from webapp.schemas.settings_extra import BackupRequest

PASSWORD = "long enough pass"


async def _code(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiError) as info:
        await call
    return info.value.code.code, str(info.value.details)


def _v1_blob(password: str, document: dict[str, Any]) -> str:
    """A backup as the first format wrote it: MAGIC | 1 | salt | nonce | AES-256-GCM, scrypt N=2**15, r=8, p=1."""
    salt, nonce = os.urandom(16), os.urandom(12)
    header = b"OPBK\x01" + salt + nonce
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**15, r=8, p=1, maxmem=64 * 1024 * 1024, dklen=32)
    return base64.b64encode(header + AESGCM(key).encrypt(nonce, zlib.compress(orjson.dumps(document)), header)).decode()


async def test_new_backup_uses_scrypt_2_17_and_restores(sqlite_db: DbSettings, make_core: CoreFactory) -> None:
    core = await make_core(sqlite_db)
    await core.rpc("settings.set_profile_about", {"text": "in the backup"})
    blob = (await core.rpc("settings.backup", {"password": PASSWORD}))["data"]
    raw = base64.b64decode(blob)
    assert raw[:4] == b"OPBK" and raw[4] == 2 and 2 ** raw[5] >= 2**17  # version 2 records log2(N)
    await core.rpc("settings.set_profile_about", {"text": "changed"})
    assert await core.rpc("settings.restore", {"password": PASSWORD, "data": blob}) == {}
    assert (await core.rpc("settings.get_profile_about"))["text"] == "in the backup"
    raw_tampered = bytearray(raw)
    raw_tampered[5] = 16  # the cost byte is authenticated: another N is another key, and the header is bound
    tampered = base64.b64encode(bytes(raw_tampered)).decode()
    assert (await _code(core.rpc("settings.restore", {"password": PASSWORD, "data": tampered})))[0] == 1009


async def test_old_format_backup_still_restores(sqlite_db: DbSettings, make_core: CoreFactory) -> None:
    core = await make_core(sqlite_db)
    about = orjson.dumps({"text": "from an old backup"}).decode()
    document = {"version": 1, "registration": None, "identity": None, "sessions": [], "settings": {ROW_ABOUT: about}}
    # Made before passwords had a minimum length: a restore still takes the short one.
    blob = _v1_blob("pw-1", document)
    assert await core.rpc("settings.restore", {"password": "pw-1", "data": blob}) == {}
    assert (await core.rpc("settings.get_profile_about"))["text"] == "from an old backup"
    assert (await _code(core.rpc("settings.restore", {"password": "pw-2", "data": blob})))[0] == 1009


async def test_a_crafted_cost_is_refused_before_deriving(sqlite_db: DbSettings, make_core: CoreFactory) -> None:
    core = await make_core(sqlite_db)
    blob = base64.b64encode(b"OPBK\x02\x1e" + os.urandom(16 + 12 + 64)).decode()  # N = 2**30: 128 GiB
    code, details = await _code(core.rpc("settings.restore", {"password": PASSWORD, "data": blob}))
    assert code == 1009 and "2**30" in details


async def test_short_backup_password_is_refused(sqlite_db: DbSettings, make_core: CoreFactory) -> None:
    core = await make_core(sqlite_db)
    code, details = await _code(core.rpc("settings.backup", {"password": "7-chars"}))
    assert code == 1009 and "at least 8 characters" in details
    assert (await core.rpc("settings.backup", {"password": "8-chars!"}))["data"]
    with pytest.raises(ValidationFailed) as info:  # webapp refuses it before asking coreapp
        validate(BackupRequest, {"password": "7-chars"})
    assert [e.code.code for e in info.value.errors] == [1009]
