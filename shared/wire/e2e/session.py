"""Opening and continuing sessions; the envelope body format lives here.

Envelope body (``Envelope.body``): MessagePack map of ``EnvelopeBody``::

    {"v": 1, "ratchet_key": bin32, "counter": n, "previous_counter": pn, "ciphertext": bin,
     "prekey": {"identity_key": bin32, "ephemeral_key": bin32, "signed_prekey": bin32,
                "one_time_prekey": bin32 | nil}}          # present iff Envelope.kind is PREKEY

``ciphertext`` is AES-256-CBC output followed by a 16-byte tag over the X3DH associated data (both identity
keys) and the DR header. Pre-keys are named by their public bytes (as x3dh's header does), not by key id.

PREKEY vs MESSAGE: the initiator sends PREKEY (carrying the X3DH header) until it has decrypted a reply,
MESSAGE afterwards; the responder always sends MESSAGE. Receiver rule: with a session for (peer, device) call
``decrypt`` (it also takes the initiator's repeated PREKEY envelopes); without one, ``decrypt_first``. If
``decrypt`` raises ``SessionMismatchError`` the peer opened a new session: retry with ``decrypt_first``,
passing the stored state as ``existing``.

Session state is a *record*: the current session plus up to ``MAX_PREVIOUS`` earlier ones, as in Signal.
When both sides open a session at the same moment (a phone's first message crosses the business's), each
side accepts the other's session and keeps its own as a previous one; ``decrypt`` tries every session and
promotes the one that decrypts, so both sides settle on one session instead of losing each other for good.
"""

from __future__ import annotations

from typing import Annotated, Any

import doubleratchet
import msgspec
import x3dh

from shared.wire.e2e._protocol import DR_CONFIG, KEY_LENGTH, DoubleRatchet
from shared.wire.e2e.errors import BundleError, DecryptError, E2EError, SessionMismatchError
from shared.wire.e2e.identity import Identity
from shared.wire.frames import DeviceBundle, Envelope, EnvelopeKind

Key = Annotated[bytes, msgspec.Meta(min_length=KEY_LENGTH, max_length=KEY_LENGTH)]
Counter = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


class PreKeyHeader(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """X3DH header: who we are and which of the recipient's keys the agreement used."""

    identity_key: Key  # sender's Ed25519 identity key
    ephemeral_key: Key  # sender's X25519 ephemeral key (also identifies the session)
    signed_prekey: Key  # recipient's signed pre-key public key
    one_time_prekey: Key | None = None  # recipient's one-time pre-key public key, if the bundle had one


class EnvelopeBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    v: int = 1
    ratchet_key: Key
    counter: Counter
    previous_counter: Counter
    ciphertext: bytes
    prekey: PreKeyHeader | None = None


class _SessionDoc(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    v: int = 1
    device_id: int  # the peer's device our envelopes go to
    peer: bytes  # peer identity key
    ad: bytes  # X3DH associated data
    base: bytes  # ephemeral key of the X3DH agreement: matches repeated PREKEY envelopes to this session
    pending: PreKeyHeader | None = None  # initiator only, until the first reply is decrypted
    dr: dict[str, Any]  # the library's own JSON (holds \u0000)


class _Record(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    v: int = 2
    current: _SessionDoc
    previous: list[_SessionDoc] = []


MAX_PREVIOUS = 4
"""Earlier sessions kept per (peer, device): enough for crossing first messages and a re-registration."""

_body_encoder = msgspec.msgpack.Encoder()
_body_decoder = msgspec.msgpack.Decoder(EnvelopeBody)


def _envelope(device_id: int, message: doubleratchet.EncryptedMessage, prekey: PreKeyHeader | None) -> Envelope:
    body = EnvelopeBody(
        ratchet_key=message.header.ratchet_pub,
        counter=message.header.sending_chain_length,
        previous_counter=message.header.previous_sending_chain_length,
        ciphertext=message.ciphertext,
        prekey=prekey,
    )
    kind = EnvelopeKind.MESSAGE if prekey is None else EnvelopeKind.PREKEY
    return Envelope(device_id=device_id, kind=kind, body=_body_encoder.encode(body))


def _parse(envelope: Envelope) -> tuple[EnvelopeBody, doubleratchet.EncryptedMessage]:
    try:
        body = _body_decoder.decode(envelope.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecryptError("undecodable envelope body") from exc
    if body.v != 1:
        raise DecryptError(f"unsupported envelope body version {body.v}")
    if (body.prekey is not None) != (envelope.kind == EnvelopeKind.PREKEY):
        raise DecryptError("envelope kind does not match its body")
    header = doubleratchet.Header(body.ratchet_key, body.previous_counter, body.counter)
    return body, doubleratchet.EncryptedMessage(header=header, ciphertext=body.ciphertext)


def _dump(record: _Record, ratchet: DoubleRatchet) -> str:
    """Serialise ``record`` with ``ratchet`` as the new state of its current session."""
    record.current.dr = dict(ratchet.json)
    return msgspec.json.encode(record).decode()


def _load(session_json: str) -> _Record:
    """A session record; a version-1 document (one session, no ``current``) becomes a record of one."""
    try:
        raw = msgspec.json.decode(session_json)
        if isinstance(raw, dict) and "current" in raw:
            record = msgspec.json.decode(session_json, type=_Record)
        else:
            record = _Record(current=msgspec.json.decode(session_json, type=_SessionDoc))
        for doc in (record.current, *record.previous):
            if doc.v != 1:
                raise ValueError(f"unsupported session version {doc.v}")
        return record
    except Exception as exc:
        raise E2EError("corrupt session state") from exc


def _ratchet(doc: _SessionDoc) -> DoubleRatchet:
    try:
        return DoubleRatchet.from_json(doc.dr, *DR_CONFIG)
    except Exception as exc:
        raise E2EError("corrupt session state") from exc


async def encrypt_first(identity: Identity, bundle: DeviceBundle, plaintext: bytes) -> tuple[str, Envelope]:
    """Open a session to one device (X3DH active + DR as sender): ``(session_json, PREKEY envelope)``.

    Raises ``BundleError`` if the bundle's keys are malformed or its signed pre-key signature fails.
    """
    opk = bundle.one_time_prekey
    keys = [bundle.identity_key, bundle.signed_prekey.public_key] + ([] if opk is None else [opk.public_key])
    if any(len(k) != KEY_LENGTH for k in keys):
        raise BundleError("bundle keys must be 32 bytes")
    peer_bundle = x3dh.Bundle(
        identity_key=bundle.identity_key,
        signed_pre_key=bundle.signed_prekey.public_key,
        signed_pre_key_sig=bundle.signed_prekey.signature,
        pre_keys=frozenset() if opk is None else frozenset({opk.public_key}),
    )
    try:
        shared_secret, ad, header = await identity._active_state().get_shared_secret_active(
            peer_bundle, require_pre_key=False
        )
        ratchet, message = await DoubleRatchet.encrypt_initial_message(
            *DR_CONFIG, shared_secret, bundle.signed_prekey.public_key, plaintext, ad
        )
    except Exception as exc:
        raise BundleError(f"cannot open a session with this bundle: {exc}") from exc
    pending = PreKeyHeader(
        identity_key=header.identity_key,
        ephemeral_key=header.ephemeral_key,
        signed_prekey=header.signed_pre_key,
        one_time_prekey=header.pre_key,
    )
    doc = _SessionDoc(
        device_id=bundle.device_id, peer=bundle.identity_key, ad=ad, base=header.ephemeral_key, pending=pending, dr={}
    )
    return _dump(_Record(current=doc), ratchet), _envelope(bundle.device_id, message, pending)


async def decrypt_first(
    identity: Identity,
    sender_public_key: bytes | None,
    envelope: Envelope,
    *,
    sender_device: int = 0,
    existing: str | None = None,
) -> tuple[str, bytes]:
    """Accept a session from a PREKEY envelope: ``(session_json, plaintext)``.

    Consumes the one-time pre-key inside ``identity`` only on success (persist ``identity.to_json()`` after).
    ``sender_public_key`` (checked when not None) is the identity the network vouches for; ``sender_device``
    is where replies go (``Deliver.sender_device``). ``existing`` is the state already held for this peer
    device: its sessions are kept as previous ones (never pass state of another peer or device).
    """
    kept: list[_SessionDoc] = []
    if existing is not None:
        try:
            old = _load(existing)
            kept = [old.current, *old.previous][:MAX_PREVIOUS]
        except E2EError:
            kept = []  # unreadable state is replaced, as before records existed
    body, message = _parse(envelope)
    prekey = body.prekey
    if prekey is None:
        raise DecryptError("not a PREKEY envelope")
    if sender_public_key is not None and prekey.identity_key != sender_public_key:
        raise DecryptError("sender identity key does not match the envelope")
    header = x3dh.Header(
        identity_key=prekey.identity_key,
        ephemeral_key=prekey.ephemeral_key,
        signed_pre_key=prekey.signed_prekey,
        pre_key=prekey.one_time_prekey,
    )
    try:
        state, priv = identity._scratch_state(prekey.one_time_prekey)
    except KeyError as exc:
        raise DecryptError("unknown or already used one-time pre-key") from exc
    try:
        shared_secret, ad, spk = await state.get_shared_secret_passive(header, require_pre_key=False)
        ratchet, plaintext = await DoubleRatchet.decrypt_initial_message(
            *DR_CONFIG, shared_secret, spk.priv, message, ad
        )
    except Exception as exc:
        raise DecryptError(f"cannot open the session: {exc}") from exc
    identity._consume(prekey.one_time_prekey, priv)
    doc = _SessionDoc(device_id=sender_device, peer=prekey.identity_key, ad=ad, base=prekey.ephemeral_key, dr={})
    return _dump(_Record(current=doc, previous=kept), ratchet), plaintext


async def encrypt(session_json: str, plaintext: bytes) -> tuple[str, Envelope]:
    """Continue the current session; PREKEY kind until this (initiating) side has decrypted a reply."""
    record = _load(session_json)
    ratchet = _ratchet(record.current)
    message = await ratchet.encrypt_message(plaintext, record.current.ad)
    return _dump(record, ratchet), _envelope(record.current.device_id, message, record.current.pending)


async def decrypt(session_json: str, envelope: Envelope) -> tuple[str, bytes]:
    """Decrypt with the current session or a previous one, which then becomes current (Signal's rule).

    Takes the initiator's repeated PREKEY envelopes for a held session. Raises ``SessionMismatchError`` (a
    ``DecryptError``) for a PREKEY envelope of a session not held: the peer opened a new one.
    """
    body, message = _parse(envelope)
    try:
        record = _load(session_json)
    except E2EError as exc:
        raise DecryptError(str(exc)) from exc
    sessions = [record.current, *record.previous]
    if body.prekey is not None:
        prekey = body.prekey
        sessions = [d for d in sessions if d.base == prekey.ephemeral_key and d.peer == prekey.identity_key]
        if not sessions:
            raise SessionMismatchError("PREKEY envelope belongs to another session")
    failure: Exception | None = None
    for doc in sessions:
        try:
            ratchet = _ratchet(doc)
            plaintext = await ratchet.decrypt_message(message, doc.ad)
        except Exception as exc:  # a failed attempt leaves the stored state untouched
            failure = failure or exc
            continue
        doc.pending = None  # only the peer can produce a valid message here: it has the session
        others = [d for d in (record.current, *record.previous) if d is not doc]
        return _dump(_Record(current=doc, previous=others[:MAX_PREVIOUS]), ratchet), plaintext
    raise DecryptError(f"cannot decrypt: {failure}")
