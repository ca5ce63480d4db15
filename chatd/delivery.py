"""What happens to a business's ``Send`` on the phone side: hold, decrypt, store, receipt.

Envelopes are persisted in a per-phone queue the moment chatd accepts them (that is what its ``Ack`` means), and
a drain task per phone works through the queue while the phone is online, in order.  Each device decrypts its
own envelope with its own session: success puts the message in the inbox (once per message id) and schedules
``delivered`` (and ``read`` when ``auto_read``) on the sandbox clock; failure sends a ``failed`` receipt at once.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec

from chatd.clock import Clock
from chatd.directory import Directory
from chatd.media import MediaStore, open_media
from chatd.outbox import Outbox
from chatd.phones import InboxEntry, Phone, Phones, session_key
from chatd.store import Store
from shared.errors import ErrorCode
from shared.tasks import TaskSupervisor
from shared.wire import e2e
from shared.wire.frames import Envelope, Receipt, ReceiptStatus, Send
from shared.wire.media import MediaError

log = logging.getLogger("openprem.chatd.delivery")

_HELD = "held"


class Held(msgspec.Struct, kw_only=True):
    """One envelope waiting for its phone device."""

    business: str
    business_device: int
    message_id: str
    envelope: Envelope
    timestamp: int


_held_decoder = msgspec.json.Decoder(Held)


def _content(plaintext: bytes) -> dict[str, Any]:
    """The decrypted message object; anything that is not a JSON object is shown raw, not dropped."""
    try:
        doc = json.loads(plaintext.decode())
    except (UnicodeDecodeError, ValueError):
        return {"type": "unknown", "unknown": {"raw": plaintext.decode(errors="replace")}}
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        return {"type": "unknown", "unknown": {"raw": doc}}
    return doc


class PhoneDelivery:
    def __init__(
        self,
        store: Store,
        phones: Phones,
        directory: Directory,
        outbox: Outbox,
        clock: Clock,
        tasks: TaskSupervisor,
        receipt_delay_s: float,
        read_delay_s: float,
        *,
        media: MediaStore | None = None,
    ) -> None:
        self._media = media
        self._store = store
        self._phones = phones
        self._directory = directory
        self._outbox = outbox
        self._clock = clock
        self._tasks = tasks
        self._receipt_delay = receipt_delay_s
        self._read_delay = max(read_delay_s, receipt_delay_s)  # read never before delivered
        self._held: dict[str, dict[int, Held]] = {}
        self._next_seq = 1
        self._draining: set[str] = set()

    async def load(self) -> None:
        for key, body in await self._store.load(_HELD):
            wa_id, _, seq = key.rpartition("/")
            self._held.setdefault(wa_id, {})[int(seq)] = _held_decoder.decode(body)
            self._next_seq = max(self._next_seq, int(seq) + 1)

    def start(self) -> None:
        for phone in self._phones.all():
            self.kick(phone)

    def held_count(self, wa_id: str) -> int:
        return len(self._held.get(wa_id, {}))

    def accept(self, business: str, business_device: int, send: Send, phone: Phone) -> None:
        """Take a ``Send`` for ``phone``; durable after the caller's ``store.sync()``."""
        if phone.state.blocked:
            log.info("+%s blocked %s: %s accepted, never delivered", phone.wa_id, business, send.message_id)
            return
        queue = self._held.setdefault(phone.wa_id, {})
        for envelope in send.envelopes:
            seq, self._next_seq = self._next_seq, self._next_seq + 1
            held = Held(
                business=business,
                business_device=business_device,
                message_id=send.message_id,
                envelope=envelope,
                timestamp=send.timestamp,
            )
            queue[seq] = held
            self._store.put(_HELD, f"{phone.wa_id}/{seq:016d}", msgspec.json.encode(held).decode())
        self.kick(phone)

    def kick(self, phone: Phone) -> None:
        """Start draining the phone's queue if it is online, has something and no drain is running."""
        if not phone.state.online or not self._held.get(phone.wa_id) or phone.wa_id in self._draining:
            return
        self._draining.add(phone.wa_id)
        self._tasks.spawn(f"phone-drain:{phone.wa_id}", self._drain(phone))

    async def _drain(self, phone: Phone) -> None:
        try:
            queue = self._held.get(phone.wa_id, {})
            while phone.state.online and queue:
                seq, held = next(iter(queue.items()))
                try:
                    await self._process(phone, held)
                finally:
                    queue.pop(seq, None)
                    self._store.delete(_HELD, f"{phone.wa_id}/{seq:016d}")
        finally:
            self._draining.discard(phone.wa_id)

    async def _process(self, phone: Phone, held: Held) -> None:
        device_id = held.envelope.device_id
        if device_id not in phone.identities:
            await self._failed(phone, held, f"phone has no device {device_id}")
            return
        async with phone.lock:
            try:
                plaintext = await self._decrypt(phone, device_id, held)
            except e2e.E2EError as exc:
                failure: str | None = str(exc) or type(exc).__name__
            else:
                failure = None
        if failure is not None:
            await self._failed(phone, held, failure)
            return
        entry = phone.inbox.get(held.message_id)
        first = entry is None
        if entry is None:
            try:  # a media message is only received once its file is downloaded and checked
                content = await open_media(self._media, _content(plaintext))
            except MediaError as exc:
                await self._failed(phone, held, f"media download failed: {exc}")
                return
            message = {
                "id": held.message_id,
                "from": held.business,
                "timestamp": held.timestamp,
                "device_id": device_id,
                **content,
            }
            entry = InboxEntry(message=message, sender=held.business, devices=[device_id])
            phone.inbox[held.message_id] = entry
        elif device_id in entry.devices:
            return  # this device already has it: a duplicate, no second receipt
        else:
            entry.devices.append(device_id)
        self._phones.save_inbox(phone, held.message_id)
        receipt = Receipt(
            message_id=held.message_id,
            recipient=phone.wa_id,
            device_id=device_id,
            status=ReceiptStatus.DELIVERED,
            timestamp=int(self._clock.now() + self._receipt_delay),
        )
        self._outbox.schedule(held.business, receipt, self._receipt_delay)
        if first and phone.state.auto_read:
            await self._phones.read(phone, held.message_id, delay_s=self._read_delay)

    async def _decrypt(self, phone: Phone, device_id: int, held: Held) -> bytes:
        key = session_key(device_id, held.business, held.business_device)
        current = phone.sessions.get(key)
        if current is not None:
            try:
                session, plaintext = await e2e.decrypt(current.session, held.envelope)
            except e2e.SessionMismatchError:
                pass  # the business opened a new session (re-registered or lost state): accept it below
            else:
                self._phones.save_session(phone, key, current.peer_key, session)
                return plaintext
        sender_key = self._directory.identity_key(held.business, held.business_device)
        if sender_key is None:
            raise e2e.DecryptError(f"sender {held.business} has no published identity key")
        session, plaintext = await e2e.decrypt_first(
            phone.identities[device_id], sender_key, held.envelope, sender_device=held.business_device
        )
        self._phones.save_session(phone, key, sender_key, session)
        self._phones.save_identity(phone, device_id)
        return plaintext

    async def _failed(self, phone: Phone, held: Held, reason: str) -> None:
        log.warning(
            "phone +%s device %d could not decrypt %s from %s: %s",
            phone.wa_id,
            held.envelope.device_id,
            held.message_id,
            held.business,
            reason,
        )
        await self._outbox.enqueue(
            held.business,
            Receipt(
                message_id=held.message_id,
                recipient=phone.wa_id,
                device_id=held.envelope.device_id,
                status=ReceiptStatus.FAILED,
                timestamp=self._clock.timestamp(),
                error_code=ErrorCode.GENERIC_ASYNC.code,
                error_title=f"{ErrorCode.GENERIC_ASYNC.title}: recipient device could not decrypt the message",
            ),
        )
