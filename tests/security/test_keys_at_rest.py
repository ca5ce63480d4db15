"""The identity, pre-keys and ratchet sessions are sealed in the database with a key kept outside it.

After a real registration against the sandbox, on every backend: no row (of any table) holds a private key in any
usual encoding, the key rows are sealed, and they open only with the key file.  A sealed value copied to another
row does not open.  An install whose rows an older version wrote in plaintext is sealed at its next start and
keeps working.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, insert, select, update

from coreapp.app import run_migrations
from coreapp.storage.keys import KeyStore
from coreapp.storage.sealing import KeystoreError, Sealer, binding
from coreapp.storage.tables import identity, messages, signal_sessions
from shared.config import DbEngine, DbSettings, KeystoreSettings, Settings
from shared.db.engine import Database
from shared.ids import WaId
from tests.coreapp.conftest import BUSINESS_WA_ID, PHONE, Core, CoreFactory, Sandbox, eventually, register

SECRET_FIELDS = {"secret", "priv", "own_ratchet_priv", "key"}
"""Fields of the x3dh identity and double-ratchet session JSON that hold private keys or chain keys."""


def _secrets(document: Any, parent: str = "") -> list[str]:
    """Every private value in an identity or session JSON document (byte strings as code points 0-255)."""
    found: list[str] = []
    if isinstance(document, dict):
        for name, value in document.items():
            if isinstance(value, str) and name in SECRET_FIELDS and len(value) >= 16:
                found.append(value)
            else:
                found += _secrets(value, name)
    elif isinstance(document, list):
        for value in document:
            if isinstance(value, str) and parent == "pre_keys":
                found.append(value)  # one-time pre-key private keys
            else:
                found += _secrets(value, parent)
    return found


def _forms(secret: str) -> list[bytes]:
    """How a private value could show up in a row or file: raw, base64, hex, UTF-8, JSON-escaped."""
    raw = secret.encode("latin-1")
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        raw.hex().encode(),
        secret.encode("utf-8"),
        json.dumps(secret)[1:-1].encode(),
    ]


async def _dump(db: Database) -> bytes:
    """Every value of every table in the database, as bytes."""
    metadata = MetaData()
    async with db.engine.connect() as conn:
        await conn.run_sync(lambda sync: metadata.reflect(sync))
        parts: list[bytes] = []
        for table in metadata.sorted_tables:
            for row in await conn.execute(select(table)):
                parts += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    return b"\n".join(parts)


async def _raw_keys(db: Database) -> tuple[str | None, dict[tuple[str, int], str]]:
    async with db.engine.connect() as conn:
        ident = await conn.scalar(select(identity.c.data).where(identity.c.id == 1))
        rows = await conn.execute(select(signal_sessions.c.peer, signal_sessions.c.device_id, signal_sessions.c.state))
        return ident, {(r.peer, r.device_id): r.state for r in rows}


def _assert_sealed(value: str) -> None:
    assert value.startswith("opseal:"), value[:40]
    base64.b64decode(value[len("opseal:") :], validate=True)  # nothing but the sealed bytes: no JSON, no key


def _key_file(settings: Settings) -> Path:
    return settings.keystore.key_file_in(settings.paths.data_dir)


async def _connected(core: Core) -> None:
    async def check() -> bool:
        return await core.health() == "connected"

    await eventually(check)


async def _exchange(core: Core, sandbox: Sandbox, body: str) -> None:
    """Business → phone (decrypted by the phone), then phone → business (decrypted by coreapp)."""
    message_id = (await core.rpc("messages.send", {"to": PHONE, "type": "text", "text": {"body": body}}))["id"]

    async def phone_got_it() -> bool:
        inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return any(m["id"] == message_id and m["text"]["body"] == body for m in inbox)

    await eventually(phone_got_it)
    reply = f"re: {body}"
    sent = await sandbox.admin(
        "POST", f"/admin/phones/{PHONE}/send", {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": reply}}
    )

    async def business_got_it() -> bool:
        async with core.app.db.engine.connect() as conn:
            content = await conn.scalar(select(messages.c.content).where(messages.c.id == sent["id"]))
        return content is not None and json.loads(content)["text"]["body"] == reply

    await eventually(business_got_it)


async def test_database_alone_reveals_no_key(backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory) -> None:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(backend)
    await register(core, sandbox)
    await _exchange(core, sandbox, "hello")

    identity_json = core.app.core.keys.identity.to_json()
    sessions = await core.app.stores.keys.load_sessions(WaId(PHONE))
    assert sessions, "the exchange opened a session"
    secrets = _secrets(json.loads(identity_json))
    for state in sessions.values():
        secrets += _secrets(json.loads(state))
    assert len(secrets) > 50  # identity key, signed pre-key, one-time pre-keys, ratchet and chain keys

    raw_identity, raw_sessions = await _raw_keys(core.app.db)
    assert raw_identity is not None and set(raw_sessions) == {(PHONE, d) for d in sessions}
    for value in [raw_identity, *raw_sessions.values()]:
        _assert_sealed(value)
    dump = await _dump(core.app.db)
    leaked = [s for s in secrets for form in _forms(s) if form in dump]
    assert not leaked, f"{len(leaked)} private values readable in the database"
    if backend.engine is DbEngine.SQLITE:  # the files themselves, WAL included
        path = Path(backend.sqlite_path)
        files = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        assert not [s for s in secrets for form in _forms(s) if form in files]

    # Without the key file the rows do not open; with it they are the identity and the session.
    key_file = _key_file(core.settings)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.raises(KeystoreError):
        Sealer(os.urandom(32)).open(raw_identity, binding("identity", 1))
    sealer = Sealer(base64.b64decode(key_file.read_text()))
    assert sealer.open(raw_identity, binding("identity", 1)) == identity_json
    for (peer, device), value in raw_sessions.items():
        assert sealer.open(value, binding("signal_sessions", peer, device)) == sessions[device]


async def _open_store(db_settings: DbSettings, data_dir: Path, key: bytes | None = None) -> tuple[Database, KeyStore]:
    await run_migrations(Settings(db=db_settings))
    db = await Database.connect(db_settings)
    return db, await KeyStore.open(db, KeystoreSettings(key=key), data_dir)


async def test_a_sealed_value_opens_only_in_its_own_row(backend: DbSettings, tmp_path: Path) -> None:
    db, store = await _open_store(backend, tmp_path / "data")
    try:
        alice, bob = WaId("12025550001"), WaId("12025550002")
        await store.save_identity('{"identity": "mine"}')
        await db.run(
            "test.save",
            lambda conn: store.save_sessions_txn(
                conn, {(alice, 0): '{"s": "alice/0"}', (alice, 1): '{"s": "alice/1"}', (bob, 0): '{"s": "bob/0"}'}
            ),
        )
        assert await store.load_session(alice, 0) == '{"s": "alice/0"}'
        raw_identity, raw = await _raw_keys(db)
        assert raw_identity is not None

        async def put_session(peer: str, device: int, value: str) -> None:
            async with db.engine.begin() as conn:
                await conn.execute(
                    update(signal_sessions)
                    .where(signal_sessions.c.peer == peer, signal_sessions.c.device_id == device)
                    .values(state=value)
                )

        await put_session(bob, 0, raw[(alice, 0)])  # another peer
        with pytest.raises(KeystoreError):
            await store.load_session(bob, 0)
        await put_session(alice, 1, raw[(alice, 0)])  # same peer, another device
        with pytest.raises(KeystoreError):
            await store.load_sessions(alice)
        await put_session(alice, 0, raw_identity)  # the identity's ciphertext in a session row
        with pytest.raises(KeystoreError):
            await store.load_session(alice, 0)
        async with db.engine.begin() as conn:  # a session's ciphertext in the identity row
            await conn.execute(update(identity).values(data=raw[(bob, 0)]))
        with pytest.raises(KeystoreError):
            await store.load_identity()
        tampered = bytearray(base64.b64decode(raw_identity[len("opseal:") :]))
        tampered[-1] ^= 1
        async with db.engine.begin() as conn:
            await conn.execute(update(identity).values(data="opseal:" + base64.b64encode(tampered).decode()))
        with pytest.raises(KeystoreError):
            await store.load_identity()
    finally:
        await db.close()


async def test_another_key_is_refused_at_start(backend: DbSettings, tmp_path: Path) -> None:
    db, store = await _open_store(backend, tmp_path / "data")
    await store.save_identity('{"identity": "mine"}')
    await db.close()
    db = await Database.connect(backend)
    try:
        with pytest.raises(KeystoreError, match="not the key the stored identity and sessions are sealed with"):
            await KeyStore.open(db, KeystoreSettings(key=os.urandom(32)), tmp_path / "data")
        (tmp_path / "data" / "keys" / "store.key").unlink()
        with pytest.raises(KeystoreError, match=r"key file .* is missing"):
            await KeyStore.open(db, KeystoreSettings(), tmp_path / "data")
        assert not (tmp_path / "data" / "keys" / "store.key").exists()  # never a new key over sealed rows
        raw_identity, _ = await _raw_keys(db)
        assert raw_identity is not None and raw_identity.startswith("opseal:")  # untouched
    finally:
        await db.close()


EXTRA_PEERS = 620
"""Plaintext sessions of other peers in the upgraded install: more than one sealing batch (500)."""


async def test_plaintext_install_is_sealed_at_start_and_keeps_working(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    old = await make_core(backend)
    await register(old, sandbox)
    await _exchange(old, sandbox, "before the upgrade")
    identity_json = old.app.core.keys.identity.to_json()
    sessions = await old.app.stores.keys.load_sessions(WaId(PHONE))
    await old.app.stop()

    # The rows as a version without sealing wrote them, and no key file (that version had none).
    db = await Database.connect(backend)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(update(identity).values(data=identity_json))
            for device, state in sessions.items():
                await conn.execute(
                    update(signal_sessions)
                    .where(signal_sessions.c.peer == PHONE, signal_sessions.c.device_id == device)
                    .values(state=state)
                )
            now = (await conn.execute(select(signal_sessions.c.updated_at))).scalar_one()
            state = next(iter(sessions.values()))
            await conn.execute(
                insert(signal_sessions),
                [
                    {"peer": f"1555000{n:04d}", "device_id": 0, "state": state, "updated_at": now}
                    for n in range(EXTRA_PEERS)
                ],
            )
    finally:
        await db.close()
    key_file = _key_file(old.settings)
    key_file.unlink()

    upgraded = await make_core(backend)
    raw_identity, raw_sessions = await _raw_keys(upgraded.app.db)
    assert raw_identity is not None and len(raw_sessions) == len(sessions) + EXTRA_PEERS
    for value in [raw_identity, *raw_sessions.values()]:
        _assert_sealed(value)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secrets = _secrets(json.loads(identity_json)) + [s for v in sessions.values() for s in _secrets(json.loads(v))]
    dump = await _dump(upgraded.app.db)
    assert not [s for s in secrets for form in _forms(s) if form in dump]
    await _connected(upgraded)  # same identity: the network lets it in
    await _exchange(upgraded, sandbox, "after the upgrade")  # the migrated session still ratchets both ways
    await upgraded.app.stop()

    if backend.engine is DbEngine.SQLITE:  # no plaintext left behind in freed pages either
        path = Path(backend.sqlite_path)
        files = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        assert not [s for s in _secrets(json.loads(identity_json)) for form in _forms(s) if form in files]

    again = await make_core(backend)  # idempotent: nothing left to seal, nothing sealed twice
    _, raw_again = await _raw_keys(again.app.db)
    extra = [key for key in raw_sessions if key[0] != PHONE]
    assert [raw_again[key] for key in extra] == [raw_sessions[key] for key in extra]
    await _connected(again)
