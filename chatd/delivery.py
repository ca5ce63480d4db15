"""What happens to a business's ``Send`` on the phone side: hold, decrypt, store, receipt.

Envelopes are persisted in a per-phone queue the moment chatd accepts them (that is what its ``Ack`` means), and
a drain task per phone works through the queue while the phone is online, in order.  Each device decrypts its
own envelope with its own session: success puts the message in the inbox (once per message id) and schedules
``delivered`` (and ``read`` when ``auto_read``) on the sandbox clock; failure sends a ``failed`` receipt at once.
The network's rules (``chatd.policy``) are applied on the way: some messages are never delivered, some are
answered ``failed`` with an On-Prem code, and envelopes held longer than 30 days are dropped unreported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from chatd.clock import Clock
from chatd.directory import Directory
from chatd.media import MediaStore, open_media
from chatd.outbox import Outbox
from chatd.phones import InboxEntry, Phone, Phones, session_key
from chatd.policy import HOLD_OFFLINE_S, Drop, Policy, Reject
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
    timestamp: int  # the business's own stamp
    accepted_at: float = 0.0  # chatd's clock when it took the ``Send``: the 30-day hold and 24-hour window run from it


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
        policy: Policy | None = None,
    ) -> None:
        self._media = media
        self._policy = policy if policy is not None else Policy(store)
        self.unrenderable: Callable[[dict[str, Any]], Reject | None] = lambda content: None
        """Set by ``Chatd`` to ``chatd.templates.TemplateStore.render_failure``: a template the phone cannot render."""
        self._store = store
        self._phones = phones
        self._directory = directory
        self._outbox = outbox
        self._clock = clock
        self._tasks = tasks
        self._receipt_delay = receipt_delay_s
        self._read_delay = read_delay_s
        self._held: dict[str, dict[int, Held]] = {}
        self._next_seq = 1
        self._draining: set[str] = set()

    async def load(self) -> None:
        for key, body in await self._store.load(_HELD):
            wa_id, _, seq = key.rpartition("/")
            self._held.setdefault(wa_id, {})[int(seq)] = _held_decoder.decode(body)
            self._next_seq = max(self._next_seq, int(seq) + 1)

    def start(self) -> None:
        self._clock.on_advance(self.expire)
        self.expire()
        for phone in self._phones.all():
            self.kick(phone)

    def expire(self) -> None:
        """Drop what has waited longer than the network keeps messages for offline phones: never reported."""
        cutoff = self._clock.now() - HOLD_OFFLINE_S
        for wa_id, queue in self._held.items():
            for seq, held in list(queue.items()):
                if (held.accepted_at or held.timestamp) < cutoff:
                    log.info("+%s was offline 30 days: %s from %s dropped", wa_id, held.message_id, held.business)
                    del queue[seq]
                    self._store.delete(_HELD, f"{wa_id}/{seq:016d}")

    def delays(self, wa_id: str) -> tuple[float, float]:
        """``(delivered, read)`` delays of a phone, its own or (``PATCH``) or the sandbox's; read never first."""
        phone = self._phones.get(wa_id)
        receipt = self._receipt_delay
        read = self._read_delay
        if phone is not None:
            receipt = phone.state.receipt_delay_s if phone.state.receipt_delay_s is not None else receipt
            read = phone.state.read_delay_s if phone.state.read_delay_s is not None else read
        return receipt, max(read, receipt)

    def held_count(self, wa_id: str) -> int:
        return len(self._held.get(wa_id, {}))

    def accept(self, business: str, business_device: int, send: Send, phone: Phone) -> None:
        """Take a ``Send`` for ``phone``; durable after the caller's ``store.sync()``."""
        verdict = self._policy.on_accept(phone.state)
        if isinstance(verdict, Drop):
            log.info(
                "+%s: %s from %s accepted, never delivered (%s)", phone.wa_id, send.message_id, business, verdict.reason
            )
            return
        if isinstance(verdict, Reject):
            log.info(
                "+%s: %s from %s rejected: %d %s", phone.wa_id, send.message_id, business, verdict.code, verdict.title
            )
            # after the receipt delay, like any receipt: the business has the ``Ack`` (``sent``) by then
            self._reject(business, send.message_id, phone.wa_id, send.envelopes[0].device_id, verdict)
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
                accepted_at=self._clock.now(),
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
            self.expire()
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
        if device_id in phone.state.devices_failing:  # this device fails, the others deliver (seeds: both statuses)
            reject = Reject(ErrorCode.GENERIC_ASYNC.code, ErrorCode.GENERIC_ASYNC.title, "a recipient device failed")
            self._reject(held.business, held.message_id, phone.wa_id, device_id, reject)
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
            content = _content(plaintext)
            late = self._policy.outside_window(str(content["type"]), held.accepted_at, phone.state.last_sent_at)
            if late is not None:  # the network refuses it; the phone never shows it
                self._reject(held.business, held.message_id, phone.wa_id, device_id, late)
                return
            unrenderable = self.unrenderable(content)
            if unrenderable is not None:  # "structure unavailable": the phone cannot render the template
                self._reject(held.business, held.message_id, phone.wa_id, device_id, unrenderable)
                return
            try:  # a media message is only received once its file is downloaded and checked
                content = await open_media(self._media, content)
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
            self._phones.add_to_inbox(phone, held.message_id, entry)
        elif device_id in entry.devices:
            return  # this device already has it: a duplicate, no second receipt
        else:
            entry.devices.append(device_id)
            self._phones.save_inbox(phone, held.message_id)
        receipt_delay, read_delay = self.delays(phone.wa_id)
        receipt = Receipt(
            message_id=held.message_id,
            recipient=phone.wa_id,
            device_id=device_id,
            status=ReceiptStatus.DELIVERED,
            timestamp=int(self._clock.now() + receipt_delay),
        )
        self._outbox.schedule(held.business, receipt, receipt_delay)
        if first and phone.state.auto_read:
            await self._phones.read(phone, held.message_id, delay_s=read_delay)
        if first and phone.state.auto_reply is not None:  # answers only what it decrypted, once per message
            message = dict(entry.message)
            self._tasks.spawn(f"auto-reply:{phone.wa_id}:{held.message_id}", self._phones.auto_reply(phone, message))

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
        # The session already held stays as a previous one when the business's identity is unchanged: a first
        # message that crossed ours may still be answered on it (shared.wire.e2e session records).
        kept = current.session if current is not None and current.peer_key == sender_key else None
        session, plaintext = await e2e.decrypt_first(
            phone.identities[device_id], sender_key, held.envelope, sender_device=held.business_device, existing=kept
        )
        self._phones.save_session(phone, key, sender_key, session)
        self._phones.save_identity(phone, device_id)
        return plaintext

    def _reject(self, business: str, message_id: str, wa_id: str, device_id: int, reject: Reject) -> None:
        delay, _read = self.delays(wa_id)
        receipt = Receipt(
            message_id=message_id,
            recipient=wa_id,
            device_id=device_id,
            status=ReceiptStatus.FAILED,
            timestamp=int(self._clock.now() + delay),
            error_code=reject.code,
            error_title=reject.title,
            error_details=reject.details,
        )
        self._outbox.schedule(business, receipt, delay)

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
