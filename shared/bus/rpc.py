"""Typed RPC over the bus: a ``Method`` names one call and the msgspec structs of its request and reply.

The bus itself moves bytes (``Bus.request_raw``); a ``Method`` is where they become structs and back, on both
sides of the boundary: webapp encodes the request and decodes the reply, coreapp decodes the request and
encodes the reply.  A request that does not decode is the caller's mistake (1008 when a field is missing, 1009
otherwise: coreapp may be called by something other than webapp); a reply that does not decode is ours, and
gets its own code (1014 Internal error) instead of a ``KeyError`` somewhere further on.

On the wire (MQTT and, byte for byte, the in-process bus): a request is ``{"method": name, "payload": <request
JSON>}``, a reply ``{"ok": <reply JSON>}`` or ``{"error": {"code", "title", "details"?, "href"?}}``, the error
being an On-Prem ``ErrorCode`` (``shared.errors``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from shared.errors import ApiError, ErrorCode

Req = TypeVar("Req", bound=msgspec.Struct)
Rep = TypeVar("Rep", bound=msgspec.Struct)

_encoder = msgspec.json.Encoder()


class Empty(msgspec.Struct, forbid_unknown_fields=False):
    """The request or reply of a call that carries nothing: ``{}``."""


EMPTY = Empty()


class RpcError(msgspec.Struct, omit_defaults=True):
    """An ``ApiError`` as it crosses the bus."""

    code: int
    title: str
    details: str | None = None
    href: str | None = None

    @classmethod
    def of(cls, error: ApiError) -> RpcError:
        return cls(code=error.code.code, title=error.code.title, details=error.details, href=error.href)

    def to_api_error(self) -> ApiError:
        return ApiError(ErrorCode.from_code(self.code), self.details, self.href)


class _Request(msgspec.Struct):
    method: str
    payload: msgspec.Raw


class _Reply(msgspec.Struct, omit_defaults=True):
    ok: msgspec.Raw = msgspec.Raw()
    error: RpcError | None = None


_request_decoder = msgspec.json.Decoder(_Request)
_reply_decoder = msgspec.json.Decoder(_Reply)


class Placement(enum.Enum):
    """Which node of a multiconnect deployment serves a method (reference §5): the others answer 1017 / 1018."""

    MASTER = "master"
    """The primary master: registration, settings, backup, shards, DB stats, webhooks, GC (1017 elsewhere)."""
    RECIPIENT = "recipient"
    """The owner of the shard of the request's recipient (``Method.recipient``; 1018 elsewhere)."""
    ANY_SHARD = "any_shard"
    """Any shard owner: the call needs the number's network connection, not a particular peer's shard."""
    NODE = "node"
    """Any node answers for itself (its stats); the caller names the node, else the primary master answers."""


class Method(Generic[Req, Rep]):
    """One RPC: its name on the bus, its request and reply types, and what the contract table says of it.

    ``doc`` describes the reply (and how the caller maps it) and ``errors`` the On-Prem codes it may answer;
    ``docs/contracts.md`` §3 is generated from both (``python -m shared.bus.contract``).
    """

    __slots__ = (
        "_reply_decoder",
        "_request_decoder",
        "doc",
        "errors",
        "field_errors",
        "name",
        "placement",
        "recipient",
        "reply",
        "request",
    )

    def __init__(
        self,
        name: str,
        request: type[Req],
        reply: type[Rep],
        *,
        doc: str,
        errors: str = "",
        field_errors: Mapping[str, str] | None = None,
        placement: Placement = Placement.MASTER,
        recipient: Callable[[Req], str] | None = None,
    ) -> None:
        if (placement is Placement.RECIPIENT) != (recipient is not None):
            raise ValueError(f"{name}: a RECIPIENT method names its recipient, and only it")
        self.name = name
        self.placement = placement
        self.recipient = recipient
        """The peer whose shard serves the request (``Placement.RECIPIENT``)."""
        self.request = request
        self.reply = reply
        self.doc = doc
        self.errors = errors
        self.field_errors: Mapping[str, str] = field_errors or {}
        """What a request field must be, said the On-Prem way (``"shards must be one of 1, 2, 4, …"``): the
        details of a 1009 for that field instead of the decoder's wording."""
        self._request_decoder: msgspec.json.Decoder[Req] = msgspec.json.Decoder(request)
        self._reply_decoder: msgspec.json.Decoder[Rep] = msgspec.json.Decoder(reply)

    def __repr__(self) -> str:
        return f"Method({self.name!r}, {self.request.__name__}, {self.reply.__name__})"

    def encode_request(self, request: Req) -> bytes:
        return _encoder.encode(request)

    def decode_request(self, raw: bytes) -> Req:
        """The request, or ``ApiError`` 1008/1009 naming the field (the caller sent something malformed)."""
        try:
            return self._request_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise request_error(exc, self.field_errors) from None
        except msgspec.DecodeError:
            raise ApiError(ErrorCode.INVALID_REQUEST, f"{self.name}: the request is not JSON") from None

    def encode_reply(self, reply: Rep) -> bytes:
        return _encoder.encode(reply)

    def decode_reply(self, raw: bytes) -> Rep:
        """The reply, or ``ApiError`` 1014 when coreapp answered something this contract does not describe."""
        try:
            return self._reply_decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ApiError(ErrorCode.INTERNAL, f"malformed reply from coreapp to {self.name}: {exc}") from None


_AT = re.compile(r" - at `\$\.([A-Za-z_][A-Za-z0-9_]*)")


def request_error(exc: msgspec.ValidationError, field_errors: Mapping[str, str] | None = None) -> ApiError:
    """1008 for a missing required field or an empty required string, 1009 for any other wrong value (an empty
    list too); the text names the field."""
    message = str(exc)
    if message.startswith("Object missing required field") or message.startswith("Expected `str` of length >= 1"):
        return ApiError(ErrorCode.MISSING_PARAMETER, message)
    at = _AT.search(message)
    hint = (field_errors or {}).get(at.group(1)) if at else None
    return ApiError(ErrorCode.INVALID_PARAMETER, hint or message)


# --- the envelope (transport-level; the buses use these, nothing else should) ----------------------------------


def request_body(method: str, payload: bytes) -> bytes:
    """``{"method", "payload"}`` around an already encoded request."""
    return b'{"method":' + _encoder.encode(method) + b',"payload":' + payload + b"}"


def parse_request(body: bytes | bytearray | str) -> tuple[str, bytes]:
    """``(method, payload JSON)``; ``ValueError`` when the envelope is malformed."""
    try:
        request = _request_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(str(exc)) from None
    return request.method, bytes(request.payload)


def ok_body(result: bytes) -> bytes:
    return b'{"ok":' + result + b"}"


def error_body(error: ApiError) -> bytes:
    return _encoder.encode(_Reply(error=RpcError.of(error)))


def parse_reply(body: bytes | bytearray | str) -> bytes:
    """The result JSON of a reply, or its ``ApiError`` raised (1014 when the envelope itself is malformed)."""
    try:
        reply = _reply_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(ErrorCode.INTERNAL, f"malformed reply from coreapp: {exc}") from None
    if reply.error is not None:
        raise reply.error.to_api_error()
    if not reply.ok:
        raise ApiError(ErrorCode.INTERNAL, "malformed reply from coreapp: neither ok nor error")
    return bytes(reply.ok)


def to_builtins(value: msgspec.Struct) -> dict[str, Any]:
    """A reply as the JSON object it travels as (for callers that relay it, and for tests)."""
    result = msgspec.to_builtins(value)
    assert isinstance(result, dict)
    return result
