"""Simulated consumer phones: their own Signal keys per device, state, inbox and what they send.

A phone only shows what it really decrypted: an envelope it cannot open is answered with a ``failed`` receipt,
never faked.  Envelopes for an offline phone wait (persisted) until it comes online.  Receiving lives in
``PhoneDelivery`` (``chatd.delivery``); this module owns the phones' state, keys, sessions and sending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from chatd.clock import Clock
from chatd.directory import Directory
from chatd.media import MediaStore, seal
from chatd.outbox import Outbox
from chatd.replies import ContentError, check, parse_auto_reply, reply_to
from chatd.store import Store
from shared.ids import new_message_id
from shared.wire import e2e
from shared.wire.frames import Deliver, Receipt, ReceiptStatus
from shared.wire.media import MediaError

log = logging.getLogger("openprem.chatd.phones")

_PHONE, _IDENTITY, _SESSION, _INBOX = "phone", "phone_identity", "phone_session", "inbox"
_WA_ID = re.compile(r"^[1-9][0-9]{6,16}$")
_PREKEY_LOW_WATER, _PREKEY_POOL = 10, 50
MAX_DEVICES = 8


class PhoneError(Exception):
    """A request the admin API refuses: ``status`` is the HTTP status (400, 404, 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PhoneState(msgspec.Struct, kw_only=True):
    """What ``GET /admin/phones/{wa_id}`` shows and ``PATCH`` changes (besides ``devices``)."""

    wa_id: str
    name: str
    devices: int = 1
    online: bool = True
    auto_read: bool = True
    blocked: bool = False
    client_version: str = "2.24.1.6"
    terms_accepted: bool = True
    created_at: float = 0.0
    last_sent_at: float | None = None
    changed_number: bool = False  # the user moved to another number: this one is no longer a WhatsApp user
    new_wa_id: str | None = None  # where it moved (``POST /admin/phones/{wa_id}/change-number``)
    experiment: bool = False  # in an experiment group: the network refuses business messages (472)
    devices_failing: list[int] = []  # devices that cannot take messages: they answer ``failed``, the others deliver
    receipt_delay_s: float | None = None  # this phone's delay before ``delivered`` (None: the sandbox's)
    read_delay_s: float | None = None  # this phone's delay before ``read`` (None: the sandbox's)
    auto_reply: dict[str, Any] | None = None  # what it answers each business message with (``chatd.replies``)


# field name -> type accepted by PATCH
PATCHABLE: dict[str, type] = {
    "online": bool,
    "name": str,
    "auto_read": bool,
    "blocked": bool,
    "client_version": str,
    "terms_accepted": bool,
    "changed_number": bool,
    "experiment": bool,
    "devices_failing": list,
    "receipt_delay_s": float,
    "read_delay_s": float,
    "auto_reply": dict,
}
_MAX_DELAY_S = 24 * 3600.0


@dataclass
class InboxEntry:
    """One received message (however many devices decrypted it); ``message`` is what the admin API shows."""

    message: dict[str, Any]
    sender: str
    devices: list[int]
    read: bool = False


class PeerSession(msgspec.Struct):
    """A Signal session with one business device, and the identity key it was opened with.

    The key tells the phone when the business re-registered with new keys: the old session is then useless and
    the phone opens a new one, as a real phone does after a "security code changed".
    """

    peer_key: bytes
    session: str


_peer_session_decoder = msgspec.json.Decoder(PeerSession)


class SentEntry(msgspec.Struct, kw_only=True):
    """A message the phone sent to a business, and whether the business marked it read (``ReadReceipt``)."""

    id: str
    to: str
    type: str
    timestamp: int
    read_by_business: bool = False
    read_at: int | None = None


_sent_decoder = msgspec.json.Decoder(SentEntry)
_SENT = "phone_sent"


@dataclass(eq=False)
class Phone:
    state: PhoneState
    identities: dict[int, e2e.Identity]
    sessions: dict[str, PeerSession] = field(default_factory=dict)  # by ``session_key``
    inbox: dict[str, InboxEntry] = field(default_factory=dict)  # message id -> entry, in arrival order
    sent: dict[str, SentEntry] = field(default_factory=dict)  # message id -> what the phone sent, in order
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def wa_id(self) -> str:
        return self.state.wa_id


def session_key(device_id: int, peer: str, peer_device: int) -> str:
    return f"{device_id}/{peer}/{peer_device}"


class Phones:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        outbox: Outbox,
        clock: Clock,
        *,
        media: MediaStore | None = None,
        inbox_limit: int = 1000,
    ) -> None:
        self._inbox_limit = inbox_limit
        self._media = media
        self._store = store
        self._directory = directory
        self._outbox = outbox
        self._clock = clock
        self._phones: dict[str, Phone] = {}
        self._state_decoder = msgspec.json.Decoder(PhoneState)

    async def load(self) -> None:
        identities: dict[str, dict[int, e2e.Identity]] = {}
        for key, body in await self._store.load(_IDENTITY):
            wa_id, _, device = key.partition("/")
            identities.setdefault(wa_id, {})[int(device)] = e2e.Identity.from_json(body)
        for _key, body in await self._store.load(_PHONE):
            state = self._state_decoder.decode(body)
            self._phones[state.wa_id] = Phone(state=state, identities=identities.get(state.wa_id, {}))
        for key, body in await self._store.load(_SESSION):
            wa_id, _, rest = key.partition("/")
            if wa_id in self._phones:
                self._phones[wa_id].sessions[rest] = _peer_session_decoder.decode(body)
        for key, body in await self._store.load(_INBOX):
            wa_id, _, message_id = key.partition("/")
            doc = json.loads(body)
            if wa_id in self._phones:
                self._phones[wa_id].inbox[message_id] = InboxEntry(
                    message=doc["message"], sender=doc["sender"], devices=doc["devices"], read=doc["read"]
                )
        for phone in self._phones.values():
            self._trim_inbox(phone)
        sent = [(key.partition("/")[0], _sent_decoder.decode(body)) for key, body in await self._store.load(_SENT)]
        for wa_id, entry in sorted(sent, key=lambda item: item[1].timestamp):  # a re-saved entry moves last
            if wa_id in self._phones:
                self._phones[wa_id].sent[entry.id] = entry

    # --- state ------------------------------------------------------------------------------------------

    def get(self, wa_id: str) -> Phone | None:
        return self._phones.get(wa_id)

    def require(self, wa_id: str) -> Phone:
        phone = self._phones.get(wa_id)
        if phone is None:
            raise PhoneError(404, f"no phone {wa_id}")
        return phone

    def all(self) -> list[Phone]:
        return list(self._phones.values())

    async def create(self, wa_id: str, name: str | None = None, devices: int = 1, online: bool = True) -> Phone:
        if not _WA_ID.match(wa_id):
            raise PhoneError(400, "wa_id must be 7-17 digits with the country code, no '+'")
        if not 1 <= devices <= MAX_DEVICES:
            raise PhoneError(400, f"devices must be between 1 and {MAX_DEVICES}")
        if wa_id in self._phones or self._directory.account(wa_id) is not None:
            raise PhoneError(409, f"{wa_id} already exists")
        identities = {d: await e2e.Identity.create(_PREKEY_POOL) for d in range(devices)}
        if wa_id in self._phones:  # created concurrently while keys were generated
            raise PhoneError(409, f"{wa_id} already exists")
        state = PhoneState(
            wa_id=wa_id, name=name or f"+{wa_id}", devices=devices, online=online, created_at=self._clock.now()
        )
        phone = Phone(state=state, identities=identities)
        self._phones[wa_id] = phone
        self.save_state(phone)
        for device_id, identity in identities.items():
            self.save_identity(phone, device_id)
            self._directory.publish(
                wa_id, device_id, identity.public_key, identity.signed_prekey(), identity.one_time_prekeys()
            )
        await self._store.sync()
        log.info("phone +%s (%s) created with %d device(s)", wa_id, state.name, devices)
        return phone

    def update(self, phone: Phone, changes: dict[str, Any]) -> list[str]:
        """Apply a PATCH; returns the changed field names."""
        changes = dict(changes)
        for name, value in changes.items():
            expected = PATCHABLE.get(name)
            if expected is None:
                raise PhoneError(400, f"'{name}' cannot be changed; changeable: {', '.join(sorted(PATCHABLE))}")
            if expected is float:
                ok = value is None or (isinstance(value, int | float) and not isinstance(value, bool))
                if not ok or (value is not None and not 0 <= value <= _MAX_DELAY_S):
                    raise PhoneError(400, f"'{name}' must be null or seconds between 0 and {_MAX_DELAY_S:g}")
                changes[name] = None if value is None else float(value)
                continue
            if expected is dict:
                try:
                    changes[name] = parse_auto_reply(value)
                except ContentError as exc:
                    raise PhoneError(400, str(exc)) from None
                continue
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                raise PhoneError(400, f"'{name}' must be a {expected.__name__}")
            if isinstance(value, list) and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise PhoneError(400, f"'{name}' must be a list of device ids")
        for name, value in changes.items():
            setattr(phone.state, name, value)
        self.save_state(phone)
        return list(changes)

    def describe(self, phone: Phone) -> dict[str, Any]:
        doc: dict[str, Any] = msgspec.to_builtins(phone.state)
        doc["devices"] = [
            {"device_id": d, "identity_key": identity.public_key.hex()}
            for d, identity in sorted(phone.identities.items())
        ]
        doc["inbox_count"] = len(phone.inbox)
        return doc

    async def reinstall(self, phone: Phone) -> list[str]:
        """WhatsApp reinstalled: new keys on every device, every session gone; returns the businesses it knew."""
        async with phone.lock:
            known = self.known_businesses(phone)
            for key in phone.sessions:
                self._store.delete(_SESSION, f"{phone.wa_id}/{key}")
            phone.sessions.clear()
            for device_id in list(phone.identities):
                identity = phone.identities[device_id] = await e2e.Identity.create(_PREKEY_POOL)
                self.save_identity(phone, device_id)
                self._directory.publish(
                    phone.wa_id, device_id, identity.public_key, identity.signed_prekey(), identity.one_time_prekeys()
                )
        return known

    def known_businesses(self, phone: Phone) -> list[str]:
        """The businesses this phone has a session or messages with: those told about its key changes."""
        known = {key.split("/")[1] for key in phone.sessions} | {e.sender for e in phone.inbox.values()}
        known |= {e.to for e in phone.sent.values()}
        return sorted(b for b in known if self._directory.account(b) is not None)

    def inbox(self, phone: Phone) -> list[dict[str, Any]]:
        return [entry.message for entry in phone.inbox.values()]

    # --- persistence helpers (also used by delivery) -----------------------------------------------------

    def save_state(self, phone: Phone) -> None:
        self._store.put(_PHONE, phone.wa_id, msgspec.json.encode(phone.state).decode())

    def save_identity(self, phone: Phone, device_id: int) -> None:
        self._store.put(_IDENTITY, f"{phone.wa_id}/{device_id}", phone.identities[device_id].to_json())

    def save_session(self, phone: Phone, key: str, peer_key: bytes, session_json: str) -> None:
        entry = PeerSession(peer_key=peer_key, session=session_json)
        phone.sessions[key] = entry
        self._store.put(_SESSION, f"{phone.wa_id}/{key}", msgspec.json.encode(entry).decode())

    def add_to_inbox(self, phone: Phone, message_id: str, entry: InboxEntry) -> None:
        """A newly received message; beyond ``inbox_limit`` the oldest leave the inbox (memory and store)."""
        phone.inbox[message_id] = entry
        self.save_inbox(phone, message_id)
        self._trim_inbox(phone)

    def _trim_inbox(self, phone: Phone) -> None:
        while len(phone.inbox) > self._inbox_limit:
            oldest = next(iter(phone.inbox))
            del phone.inbox[oldest]
            self._store.delete(_INBOX, f"{phone.wa_id}/{oldest}")

    def save_inbox(self, phone: Phone, message_id: str) -> None:
        entry = phone.inbox[message_id]
        doc = {"message": entry.message, "sender": entry.sender, "devices": entry.devices, "read": entry.read}
        self._store.put(_INBOX, f"{phone.wa_id}/{message_id}", json.dumps(doc))

    # --- acting as the phone -----------------------------------------------------------------------------

    async def send(self, phone: Phone, body: dict[str, Any]) -> str:
        """The phone writes to a business: encrypt for its device 0 and push a ``Deliver``."""
        to = body.get("to")
        if not isinstance(to, str) or self._directory.account(to.lstrip("+")) is None:
            raise PhoneError(400, f"'to' must be a registered business number, got {to!r}")
        to = to.lstrip("+")
        content = {k: v for k, v in body.items() if k not in ("to", "device_id")}
        try:
            check(content)
        except ContentError as exc:
            raise PhoneError(400, str(exc)) from None
        kind = str(content["type"])
        device_id = body.get("device_id", 0)
        if not isinstance(device_id, int) or device_id not in phone.identities:
            raise PhoneError(400, f"phone has no device {device_id!r}")
        media_obj = content.get(kind)
        if self._media is not None and isinstance(media_obj, dict) and "data_b64" in media_obj:
            try:  # a file to send: encrypt it and upload it to the media store first, as a real phone does
                content[kind] = await seal(self._media, phone.wa_id, kind, media_obj)
            except MediaError as exc:
                raise PhoneError(400, str(exc)) from None
        plaintext = json.dumps(content, separators=(",", ":")).encode()
        async with phone.lock:
            key = session_key(device_id, to, 0)
            current = phone.sessions.get(key)
            peer_key = self._directory.identity_key(to, 0)
            try:
                if current is not None and current.peer_key == peer_key:
                    session, envelope = await e2e.encrypt(current.session, plaintext)
                else:  # no session yet, or the business has new keys since: open one from a fresh bundle
                    bundle = next((b for b in self._directory.take_bundles(to) if b.device_id == 0), None)
                    if bundle is None:
                        raise PhoneError(400, f"business {to} has no published keys")
                    session, envelope = await e2e.encrypt_first(phone.identities[device_id], bundle, plaintext)
                    peer_key = bundle.identity_key
            except e2e.E2EError as exc:
                raise PhoneError(400, f"cannot encrypt for {to}: {exc}") from None
            assert peer_key is not None
            self.save_session(phone, key, peer_key, session)
            phone.state.last_sent_at = self._clock.now()
            self.save_state(phone)
        message_id, timestamp = new_message_id(), self._clock.timestamp()
        await self._outbox.enqueue(
            to,
            Deliver(
                message_id=message_id,
                sender=phone.wa_id,
                sender_device=device_id,
                sender_name=phone.state.name,
                envelope=envelope,
                timestamp=timestamp,
            ),
        )
        self._save_sent(phone, SentEntry(id=message_id, to=to, type=kind, timestamp=timestamp))
        await self._store.sync()
        log.info("phone +%s sent %s %s to %s", phone.wa_id, kind, message_id, to)
        return message_id

    async def auto_reply(self, phone: Phone, received: dict[str, Any]) -> str | None:
        """Answer a decrypted business message per ``auto_reply``; the reply's id, or ``None`` when off or failed."""
        spec = phone.state.auto_reply
        business = received.get("from")
        if spec is None or not isinstance(business, str) or phone.state.changed_number:
            return None
        try:
            return await self.send(phone, {"to": business, **reply_to(spec, received)})
        except PhoneError as exc:
            log.warning("phone +%s could not auto-reply to %s: %s", phone.wa_id, received.get("id"), exc)
            return None

    def _save_sent(self, phone: Phone, entry: SentEntry) -> None:
        phone.sent[entry.id] = entry
        self._store.put(_SENT, f"{phone.wa_id}/{entry.id}", msgspec.json.encode(entry).decode())

    def sent(self, phone: Phone) -> list[dict[str, Any]]:
        return [msgspec.to_builtins(entry) for entry in phone.sent.values()]

    def business_read(self, phone: Phone, message_id: str, business: str) -> bool:
        """The business marked one of this phone's messages read; ``False`` for an id it was never sent."""
        entry = phone.sent.get(message_id)
        if entry is None or entry.to != business:
            return False
        if not entry.read_by_business:
            entry.read_by_business, entry.read_at = True, self._clock.timestamp()
            self._save_sent(phone, entry)
        return True

    async def read(self, phone: Phone, message_id: str, delay_s: float = 0.0) -> None:
        """The user opens a message: one read receipt from the device that got it first."""
        entry = phone.inbox.get(message_id)
        if entry is None:
            raise PhoneError(404, f"phone {phone.wa_id} has no message {message_id}")
        if entry.read:
            return
        entry.read = True
        self.save_inbox(phone, message_id)
        receipt = Receipt(
            message_id=message_id,
            recipient=phone.wa_id,
            device_id=entry.devices[0],
            status=ReceiptStatus.READ,
            timestamp=int(self._clock.now() + delay_s),
        )
        if delay_s > 0:
            self._outbox.schedule(entry.sender, receipt, delay_s)
        else:
            await self._outbox.enqueue(entry.sender, receipt)
        await self._store.sync()

    async def replenish(self, wa_id: str) -> None:
        """Top up the directory's one-time pre-keys of a phone's devices after senders took bundles."""
        phone = self._phones.get(wa_id)
        if phone is None:
            return
        async with phone.lock:
            for device_id, identity in phone.identities.items():
                remaining = self._directory.prekeys_remaining(wa_id, device_id)
                if remaining >= _PREKEY_LOW_WATER:
                    continue
                # Keys handed out but not yet used are still held by the identity: ask for new ones on top.
                fresh = await identity.top_up(len(identity.one_time_prekeys()) + _PREKEY_POOL - remaining)
                if fresh:
                    self._directory.add_prekeys(wa_id, device_id, fresh, None)
                    self.save_identity(phone, device_id)
