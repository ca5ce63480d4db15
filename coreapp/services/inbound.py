"""Inbound messages (``Deliver`` pushes): decrypt, then commit message + session (+ identity) + webhook row in
ONE transaction, and only then ack.

Crash safety: before the commit nothing is acked, so the network redelivers and the same envelope decrypts
again from the unchanged stored session; after the commit the id is in ``messages`` and a redelivery is only
acked.  An envelope that cannot be decrypted never will be: it is recorded as ``undecryptable`` (so a replay is
recognised) and acked, rather than redelivered forever.

Disk full (``coreapp.maintenance.disk``): while the data or media directory is under ``WA_DISK_MIN_FREE_MB`` a
new message waits, unacked, before anything is decrypted or written; the network keeps it until then.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.link import ChatLink
from coreapp.models import MessageDirection, MessageStatus, NewMessage
from coreapp.services.keys import IdentityAcks, KeyService, unacknowledged_identity
from coreapp.services.media import MediaService
from coreapp.storage.keys import KeyStore
from coreapp.storage.messages import MessageStore
from coreapp.storage.settings import SettingsStore
from coreapp.storage.webhooks import WebhookKind, WebhookStore
from coreapp.webhooks import payloads
from shared.db.engine import Database
from shared.ids import MessageId, WaId
from shared.message_types import MessageType
from shared.wire import e2e
from shared.wire.e2e import Identity
from shared.wire.frames import Deliver, EnvelopeKind, IdentityChanged

log = logging.getLogger("openprem.coreapp.inbound")


class InboundService:
    def __init__(
        self,
        db: Database,
        link: ChatLink,
        messages: MessageStore,
        key_store: KeyStore,
        keys: KeyService,
        webhooks: WebhookStore,
        notify_webhooks: Callable[[], None],
        *,
        media: MediaService | None = None,
        room: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._media = media
        self._room = room  # the disk guard's wait_for_room: holds a push (unacked) while the disk is full
        self._db = db
        self._link = link
        self._messages = messages
        self._key_store = key_store
        self._keys = keys
        self._webhooks = webhooks
        self._notify_webhooks = notify_webhooks
        self.undecryptable = 0

    async def handle(self, deliver: Deliver) -> None:
        message_id = MessageId(deliver.message_id)
        sender = WaId(deliver.sender)
        if await self._messages.exists(message_id):
            await self._link.ack(deliver)  # stored before: only the ack was lost
            return
        if self._room is not None:
            await self._room()  # before decrypting: nothing (session, media, message) is written while we wait
        is_prekey = deliver.envelope.kind is EnvelopeKind.PREKEY
        async with self._keys.session_lock(sender), self._identity_guard(is_prekey):
            try:
                state, plaintext, identity = await self._decrypt(deliver)
            except e2e.E2EError as exc:
                await self._store_undecryptable(deliver, exc)
                return
            content = _parse_content(plaintext)
            if content is not None and self._media is not None:
                content = await self._media.receive(content)  # download + decrypt per media.auto_download
            await self._commit(deliver, state, content, identity)
        await self._link.ack(deliver)
        self._notify_webhooks()

    def _identity_guard(self, is_prekey: bool) -> contextlib.AbstractAsyncContextManager[Any]:
        # A PREKEY envelope may consume a one-time pre-key: hold the identity until that change is committed.
        return self._keys.identity_lock if is_prekey else contextlib.nullcontext()

    async def _decrypt(self, deliver: Deliver) -> tuple[str, bytes, Identity | None]:
        """``(session state, plaintext, changed identity or None)``."""
        sender, device, envelope = WaId(deliver.sender), deliver.sender_device, deliver.envelope
        session = await self._key_store.load_session(sender, device)
        if session is not None:
            try:
                state, plaintext = await e2e.decrypt(session, envelope)
                return state, plaintext, None
            except e2e.SessionMismatchError:
                log.info("%s device %d opened a new session", sender, device)
        if envelope.kind is not EnvelopeKind.PREKEY:
            raise e2e.DecryptError("no session for this sender device")
        candidate = self._keys.begin_identity_change()
        # Keep the session we held as a previous one: if our first message crossed theirs, the peer may still
        # answer on it (shared.wire.e2e session records).
        state, plaintext = await e2e.decrypt_first(candidate, None, envelope, sender_device=device, existing=session)
        return state, plaintext, candidate

    async def _commit(
        self, deliver: Deliver, state: str, content: dict[str, Any] | None, identity: Identity | None
    ) -> None:
        sender = WaId(deliver.sender)
        # The webhook shows the type exactly as the phone sent it, even one this version does not know (the row
        # records that as ``unknown``).
        raw_type = str(content.get("type", MessageType.UNKNOWN.value)) if content is not None else None
        row = NewMessage(
            id=MessageId(deliver.message_id),
            direction=MessageDirection.IN,
            peer=sender,
            type=MessageType.UNKNOWN if raw_type is None else MessageType.parse(raw_type),
            content=orjson.dumps(content).decode() if content is not None else None,
            status=MessageStatus.RECEIVED,
            timestamp=deliver.timestamp,
        )
        identity_json = identity.to_json() if identity is not None else None

        async def receive_txn(conn: AsyncConnection) -> None:
            await self._messages.insert_many_txn(conn, [row])
            await self._key_store.save_session_txn(conn, sender, deliver.sender_device, state)
            if identity_json is not None:
                await self._key_store.save_identity_txn(conn, identity_json)
            if content is not None:
                message = {**content, "id": deliver.message_id, "timestamp": deliver.timestamp, "type": raw_type}
                body = payloads.inbound_message(message, sender, deliver.sender_name)
                await self._webhooks.enqueue_txn(conn, WebhookKind.INBOUND_MESSAGE, body)

        await self._db.run("inbound.receive", receive_txn)
        if identity is not None:
            self._keys.install(identity)

    async def _store_undecryptable(self, deliver: Deliver, exc: Exception) -> None:
        self.undecryptable += 1
        log.warning(
            "message %s from %s device %d cannot be decrypted (%s); recorded and acked",
            deliver.message_id,
            deliver.sender,
            deliver.sender_device,
            exc,
        )
        row = NewMessage(
            id=MessageId(deliver.message_id),
            direction=MessageDirection.IN,
            peer=WaId(deliver.sender),
            type=MessageType.UNKNOWN,
            content=None,
            status=MessageStatus.UNDECRYPTABLE,
            timestamp=deliver.timestamp,
        )

        async def record_txn(conn: AsyncConnection) -> None:
            await self._messages.insert_many_txn(conn, [row])

        await self._db.run("inbound.undecryptable", record_txn)
        await self._link.ack(deliver)


def _parse_content(plaintext: bytes) -> dict[str, Any] | None:
    """The On-Prem message object the sender encrypted; ``None`` (stored, no webhook) if it is not one."""
    try:
        content = orjson.loads(plaintext)
    except orjson.JSONDecodeError:
        log.warning("decrypted content is not JSON; stored without a webhook")
        return None
    if not isinstance(content, dict) or not isinstance(content.get("type"), str):
        log.warning("decrypted content is not a message object; stored without a webhook")
        return None
    return content


class SystemNotices:
    """System webhooks about a user (reference §3.1, settings §2.8): ``user_identity_changed`` when
    ``show_security_notifications``, ``user_changed_number`` when ``notify_user_change_number``.

    The id is derived from the event, so a push redelivered after a crash yields the same id (receivers drop it).
    """

    def __init__(
        self,
        db: Database,
        webhooks: WebhookStore,
        keys: KeyStore,
        settings: SettingsStore,
        notify_webhooks: Callable[[], None],
        identities: IdentityAcks,
    ) -> None:
        self._db = db
        self._webhooks = webhooks
        self._settings = settings
        self._notify_webhooks = notify_webhooks
        self._identities = identities
        self._keys = keys

    async def identity_changed(self, frame: IdentityChanged) -> None:
        settings = await self._settings.get_application()
        event = f"{frame.wa_id}/{frame.timestamp}/{frame.new_wa_id or ''}".encode()
        digest = hashlib.sha256(event).digest()
        message_id = base64.urlsafe_b64encode(b"\x80\x12" + digest[:18]).decode().rstrip("=")
        peer_identity: dict[str, Any] | None = None
        if frame.new_wa_id is not None:
            if not settings.notify_user_change_number:
                return
            system = {
                "body": f"User {frame.wa_id} changed from {frame.wa_id} to {frame.new_wa_id}",
                "type": "user_changed_number",
                "new_wa_id": frame.new_wa_id,
            }
            body = payloads.system_message(message_id, frame.wa_id, frame.timestamp, system)
        else:
            if not settings.show_security_notifications:
                return
            # The 480/1028 flow (``IdentityAcks``): unacknowledged until PUT /v1/contacts/{wa_id}/identity.
            identity = unacknowledged_identity(frame)
            system = {
                "body": f"{frame.wa_id}'s security code changed",
                "type": "user_identity_changed",
                "identity": identity["hash"],
            }
            body = payloads.system_message(message_id, frame.wa_id, frame.timestamp, system, identity=identity)
            peer_identity = identity

        if peer_identity is not None:
            self._identities.may_block(WaId(frame.wa_id))  # before the write: sends to it are checked again

        async def notice_txn(conn: AsyncConnection) -> None:
            if peer_identity is not None:
                known = await self._keys.peer_identity_txn(conn, WaId(frame.wa_id), for_update=True)
                if known is None or known.get("hash") != peer_identity["hash"]:  # a replay keeps its acknowledgement
                    await self._keys.save_peer_identity_txn(conn, WaId(frame.wa_id), peer_identity)
            await self._webhooks.enqueue_txn(conn, WebhookKind.INBOUND_MESSAGE, body)

        await self._db.run("inbound.system_notice", notice_txn)
        self._notify_webhooks()
