"""Frames exchanged between coreapp and the network (chatd) over TLS.

Each frame is a msgspec struct in a tagged union, encoded as MessagePack (see ``codec``).  Requests carry an
``id`` chosen by the sender; the peer answers with a frame carrying the same ``id`` (``Ack``, ``Error`` or the
specific reply).  Ids are per direction: the client numbers its requests, the server numbers its pushes.

Session, in order::

    client                               server
    RegisterRequest ------------------>  (pre-auth, optional)
                    <------------------  RegisterResponse | Error
    VerifyRequest   ------------------>  (pre-auth; uploads identity and pre-keys)
                    <------------------  VerifyResponse | Error
    Hello           ------------------>
                    <------------------  Challenge(nonce)
    Login(signature over nonce) ------>
                    <------------------  LoginOk | Error (401 / 1005 expired / 2 maintenance)
                    <------------------  Deliver / Receipt ... (offline backlog, each acked)
                    <------------------  OfflineDone
    GetTemplates, GetBundles, Send, PublishPreKeys, ReadReceipt, Ping ... (each answered)
    GetMediaConn -> MediaConn (a new media-host token when the login's one expired)
    CheckContacts -> ContactsResult; SetTwoStep -> Ack
                    <------------------  Deliver / Receipt pushes (each acked by the client)
                    <------------------  Kick(reason), then the server closes
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class EnvelopeKind(enum.IntEnum):
    """Whether a ciphertext opens a Signal session (carries an X3DH header) or continues one."""

    PREKEY = 1
    MESSAGE = 2


class ReceiptStatus(enum.StrEnum):
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class _Frame(msgspec.Struct, tag_field="t", kw_only=True, omit_defaults=True):
    id: int = 0


# --- shared pieces -------------------------------------------------------------------------------------


class SignedPreKey(msgspec.Struct, kw_only=True):
    key_id: int
    public_key: bytes
    signature: bytes


class OneTimePreKey(msgspec.Struct, kw_only=True):
    key_id: int
    public_key: bytes


class DeviceBundle(msgspec.Struct, kw_only=True):
    """What a sender needs to open a session with one device (X3DH pre-key bundle)."""

    device_id: int
    identity_key: bytes
    signed_prekey: SignedPreKey
    one_time_prekey: OneTimePreKey | None = None


class Envelope(msgspec.Struct, kw_only=True):
    """A ciphertext for one device of the recipient."""

    device_id: int
    kind: EnvelopeKind
    body: bytes


class Template(msgspec.Struct, kw_only=True):
    namespace: str
    name: str
    language: str
    status: str
    category: str = "UTILITY"
    components: list[dict[str, Any]] = []


# --- registration (pre-auth) ----------------------------------------------------------------------------


class RegisterRequest(_Frame, tag="register"):
    cc: str
    phone_number: str
    method: str  # "sms" | "voice"
    cert: str  # base64 verified-name certificate
    pin: str | None = None


class RegisterResponse(_Frame, tag="register_ok"):
    status: str  # "code_sent" | "registered"
    vname: str


class VerifyRequest(_Frame, tag="verify"):
    cc: str
    phone_number: str
    code: str
    identity_key: bytes
    signed_prekey: SignedPreKey
    one_time_prekeys: list[OneTimePreKey]


class VerifyResponse(_Frame, tag="verify_ok"):
    wa_id: str


# --- login ----------------------------------------------------------------------------------------------


class Hello(_Frame, tag="hello"):
    wa_id: str
    client_version: str
    device_id: int = 0
    # Multiconnect: this connection serves ``shard`` of ``shards`` (``shared.shards``); one connection per shard.
    shard: int = 0
    shards: int = 1


class Challenge(_Frame, tag="challenge"):
    nonce: bytes


class Login(_Frame, tag="login"):
    signature: bytes  # XEdDSA/Ed25519 signature of the nonce by the identity key


class LoginOk(_Frame, tag="login_ok"):
    server_time: float
    prekeys_remaining: int = 0
    # Media host for this session (like WhatsApp's media_conn): a bearer token for uploads and the HTTPS port
    # of the media store on the chat host (0: not announced).  Defaults keep older peers decodable.
    media_token: str = ""
    media_port: int = 0
    media_token_expires_at: float = 0.0  # network time; 0: unknown (renew on the first refusal)


class OfflineDone(_Frame, tag="offline_done"):
    """The offline backlog pushed after login is complete."""

    count: int = 0


class Kick(_Frame, tag="kick"):
    """The server is closing this session; ``conflict`` means another instance logged in."""

    reason: str
    conflict: bool = False


# --- requests after login -------------------------------------------------------------------------------


class Ping(_Frame, tag="ping"):
    pass


class Pong(_Frame, tag="pong"):
    server_time: float = 0.0


class PublishPreKeys(_Frame, tag="publish_prekeys"):
    one_time_prekeys: list[OneTimePreKey]
    signed_prekey: SignedPreKey | None = None


class GetBundles(_Frame, tag="get_bundles"):
    wa_id: str


class Bundles(_Frame, tag="bundles"):
    wa_id: str
    devices: list[DeviceBundle]


class GetTemplates(_Frame, tag="get_templates"):
    pass


class Templates(_Frame, tag="templates"):
    templates: list[Template]


class GetMediaConn(_Frame, tag="get_media_conn"):
    """A fresh media-host token, for when the one from ``LoginOk`` expired or was refused."""


class MediaConn(_Frame, tag="media_conn"):
    token: str
    port: int = 0
    expires_at: float = 0.0  # network time


class Send(_Frame, tag="send"):
    """An outbound message: one envelope per recipient device.  The ``Ack`` makes it ``sent``."""

    message_id: str
    to: str
    envelopes: list[Envelope]
    timestamp: int


class ReadReceipt(_Frame, tag="read_receipt"):
    """The business read an inbound message (``PUT /v1/messages/{id}``)."""

    message_id: str
    to: str


class CheckContacts(_Frame, tag="check_contacts"):
    """Which of these numbers (E.164 digits, no ``+``) are WhatsApp users (``POST /v1/contacts``)."""

    numbers: list[str]


class ContactResult(msgspec.Struct, kw_only=True):
    """One answer of ``ContactsResult``: ``wa_id`` is set only for a WhatsApp user."""

    input: str
    wa_id: str | None = None


class ContactsResult(_Frame, tag="contacts_result"):
    results: list[ContactResult]


class SetTwoStep(_Frame, tag="set_two_step"):
    """Turn two-step verification on with a 6-digit ``pin``, or off with ``None``; answered with ``Ack``."""

    pin: str | None = None


# --- pushes from the server -----------------------------------------------------------------------------


class Deliver(_Frame, tag="deliver"):
    """An inbound message for the business; the client acks only after storing it."""

    message_id: str
    sender: str
    sender_device: int
    sender_name: str
    envelope: Envelope
    timestamp: int


class Receipt(_Frame, tag="receipt"):
    """A status for an outbound message from one recipient device; acked after storing."""

    message_id: str
    recipient: str
    device_id: int
    status: ReceiptStatus
    timestamp: int
    error_code: int | None = None
    error_title: str | None = None
    error_details: str | None = None  # why, for the business (e.g. the terms-of-service link): ``errors[].details``


class IdentityChanged(_Frame, tag="identity_changed"):
    """A peer's keys changed: it reinstalled WhatsApp, or (``new_wa_id`` set) its user moved to another number."""

    wa_id: str
    timestamp: int
    new_wa_id: str | None = None


# --- generic replies ------------------------------------------------------------------------------------


class Ack(_Frame, tag="ack"):
    pass


class Error(_Frame, tag="error"):
    code: int
    message: str


Frame = (
    RegisterRequest
    | RegisterResponse
    | VerifyRequest
    | VerifyResponse
    | Hello
    | Challenge
    | Login
    | LoginOk
    | OfflineDone
    | Kick
    | Ping
    | Pong
    | PublishPreKeys
    | GetBundles
    | Bundles
    | GetTemplates
    | Templates
    | GetMediaConn
    | MediaConn
    | Send
    | ReadReceipt
    | CheckContacts
    | ContactsResult
    | SetTwoStep
    | Deliver
    | Receipt
    | IdentityChanged
    | Ack
    | Error
)
