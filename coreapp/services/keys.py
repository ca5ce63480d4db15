"""The Signal key store in use: our identity (in memory, persisted on every change), per-peer session locks and
one-time pre-key top-up.

Identity changes are copy-on-write: a caller mutates a copy (``begin_identity_change``), commits its JSON in
the same transaction as whatever consumed or added keys, and only then installs it.  A failed commit leaves the
identity in memory exactly as in the DB.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from coreapp.chat.link import ChatLink
from coreapp.storage.keys import KeyStore
from coreapp.storage.settings import SettingsStore
from shared.bus.contract.contacts import IdentityEntry, IdentityReply
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId
from shared.wire.e2e import Identity
from shared.wire.frames import IdentityChanged, LoginOk, PublishPreKeys

log = logging.getLogger("openprem.coreapp.keys")

PREKEYS_LOW = 20
"""Top up when the network holds fewer of our one-time pre-keys than this."""
PREKEYS_TARGET = 50
_LOCK_STRIPES = 64


class KeyService:
    def __init__(self, store: KeyStore) -> None:
        self._store = store
        self._identity: Identity | None = None
        self.identity_lock = asyncio.Lock()
        self._session_locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]

    async def load(self) -> bool:
        """Load the identity from the DB; whether there is one."""
        data = await self._store.load_identity()
        self._identity = None if data is None else await asyncio.to_thread(Identity.from_json, data)
        return self._identity is not None

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            raise RuntimeError("no identity: this install is not registered")
        return self._identity

    def sign(self, data: bytes) -> bytes:
        return self.identity.sign(data)

    def begin_identity_change(self) -> Identity:
        """A private copy of the identity to mutate; ``install`` it after its JSON is committed.

        Hold ``identity_lock`` from here to ``install`` so two changes cannot overwrite each other.
        """
        return Identity.from_json(self.identity.to_json())

    def install(self, identity: Identity) -> None:
        self._identity = identity

    def session_lock(self, peer: WaId) -> asyncio.Lock:
        """Serialises everything that reads and writes the sessions with ``peer`` (encrypt and decrypt share
        the ratchet); striped so the lock table stays bounded."""
        return self._session_locks[zlib.crc32(peer.encode()) % _LOCK_STRIPES]

    async def top_up(self, link: ChatLink, login: LoginOk) -> None:
        """Sync step: publish fresh one-time pre-keys when the network runs low.

        The new keys are committed before they are published: a crash in between leaves unpublished keys
        (harmless), never published keys we cannot decrypt with.
        """
        remaining = login.prekeys_remaining
        if remaining >= PREKEYS_LOW:
            return
        async with self.identity_lock:
            candidate = self.begin_identity_change()
            held = len(candidate.one_time_prekeys())
            fresh = await candidate.top_up(held + PREKEYS_TARGET - remaining)
            if not fresh:
                return
            await self._store.save_identity(candidate.to_json())
            self.install(candidate)
        await link.request(PublishPreKeys(one_time_prekeys=fresh))
        log.info("published %d one-time pre-keys (network had %d)", len(fresh), remaining)


class IdentityChangeHandler:
    """``IdentityChanged`` push: the peer has new keys (reinstall) or a new number; our sessions with it are dead,
    so the next message fetches fresh bundles and opens a new session.  ``notify`` emits the system webhook."""

    def __init__(
        self,
        keys: KeyService,
        store: KeyStore,
        link: ChatLink,
        forget_devices: Callable[[WaId], None],
        notify: Callable[[IdentityChanged], Awaitable[None]] | None = None,
    ) -> None:
        self._keys = keys
        self._store = store
        self._link = link
        self._forget_devices = forget_devices
        self._notify = notify

    async def handle(self, frame: IdentityChanged) -> None:
        peer = WaId(frame.wa_id)
        async with self._keys.session_lock(peer):
            await self._store.delete_sessions(peer)
            self._forget_devices(peer)
        if frame.new_wa_id is not None:
            log.info("%s changed number to %s; its sessions were reset", peer, frame.new_wa_id)
        else:
            log.info("identity of %s changed; its sessions were reset", peer)
        if self._notify is not None:
            await self._notify(frame)  # committed before the ack: a crash in between repeats it, same id
        await self._link.ack(frame)


def identity_hash(frame: IdentityChanged) -> str:
    """The fingerprint of a peer's identity change, as the ``user_identity_changed`` webhook and
    ``GET /v1/contacts/{wa_id}/identity`` show it and ``PUT`` takes back.

    The network does not send the new key in ``IdentityChanged``, so this is derived from the event (peer and
    time of the change): stable across replays of the same push, different for each change.
    """
    event = f"{frame.wa_id}/{frame.timestamp}/{frame.new_wa_id or ''}".encode()
    return base64.b64encode(hashlib.sha256(event).digest()[18:26]).decode()


def unacknowledged_identity(frame: IdentityChanged) -> dict[str, Any]:
    """The stored (and webhook ``identity``) document of a fresh identity change: not yet acknowledged."""
    return {"hash": identity_hash(frame), "created_timestamp": frame.timestamp, "acknowledged": False}


class IdentityAcks:
    """The 480/1028 flow (reference §2.1, §4): after a peer's identity change reported with
    ``show_security_notifications`` on, sends to it answer 1028 until ``PUT /v1/contacts/{wa_id}/identity``
    acknowledges the current hash.  With the setting off nothing is recorded and nothing blocks (a record left from
    before the setting was turned off no longer blocks either).

    The setting is read from the database (not a cached copy) and only when a peer has an unacknowledged record.
    Which peers have a record at all is kept in memory (loaded once, then grown by ``may_block`` before a record
    is written, reset by ``forget`` after a restore), so the common send, to a peer with no record, reads
    nothing.  The set only grows: a record whose transaction rolled back costs that peer a read, never a missed
    1028.  One coreapp per number writes these records (multiconnect would need a shared signal).
    """

    def __init__(self, store: KeyStore, settings: SettingsStore) -> None:
        self._store = store
        self._settings = settings
        self._noted: set[WaId] = set()  # peers whose record this process wrote (or is about to)
        self._loaded: set[WaId] | None = None  # peers with a record in the database when last loaded
        self._loading = asyncio.Lock()

    def may_block(self, peer: WaId) -> None:
        """Call before writing ``peer``'s identity record: sends to it are checked against the database again."""
        self._noted.add(peer)

    def forget(self) -> None:
        """The records were rewritten outside this class (a restore): load them again on the next send."""
        self._loaded = None

    async def _has_record(self, peer: WaId) -> bool:
        if peer in self._noted:
            return True
        if self._loaded is None:
            async with self._loading:
                if self._loaded is None:
                    self._loaded = await self._store.peers_with_identity_records()
        return peer in self._loaded

    async def get(self, peer: WaId) -> IdentityReply:
        """``{"identity": [{"hash", "created_timestamp", "acknowledged"}]}``; 1006 when no change was recorded."""
        doc = await self._store.load_peer_identity(peer)
        if doc is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no identity change recorded for {peer}")
        return IdentityReply(identity=[_shown(doc)])

    async def acknowledge(self, peer: WaId, key_hash: str) -> IdentityReply:
        """Acknowledge the current identity; 1009 for another hash, 1006 when none is recorded."""
        doc = await self._store.acknowledge_peer_identity(peer, key_hash)
        if doc is None:
            raise ApiError(ErrorCode.NOT_FOUND, f"no identity change recorded for {peer}")
        if doc.get("hash") != key_hash:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "hash is not the contact's current identity hash")
        log.info("identity change of %s acknowledged", peer)
        return IdentityReply(identity=[_shown(doc)])

    async def check_send(self, peer: WaId) -> None:
        """1028 when ``peer``'s identity change is unacknowledged and ``show_security_notifications`` is on."""
        if not await self._has_record(peer):
            return
        doc = await self._store.load_peer_identity(peer)
        if doc is None or doc.get("acknowledged") is not False:
            return
        if not (await self._settings.reload()).show_security_notifications:
            return
        raise ApiError(
            ErrorCode.IDENTITY_ACK_REQUIRED,
            f"the identity of {peer} changed; acknowledge it with PUT /v1/contacts/{peer}/identity",
        )


def _shown(doc: dict[str, Any]) -> IdentityEntry:
    return IdentityEntry(
        hash=str(doc.get("hash", "")),
        created_timestamp=int(doc.get("created_timestamp", 0)),
        acknowledged=bool(doc.get("acknowledged", True)),
    )
