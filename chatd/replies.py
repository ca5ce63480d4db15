"""What a phone may send (every inbound type of reference §3.1) and what it answers on its own (``auto_reply``).

``check`` validates the content a phone is told to send (``POST /admin/phones/{wa_id}/send``, minus ``to``);
``parse_auto_reply`` validates ``PATCH /admin/phones/{wa_id} {"auto_reply": {...}}`` and fills defaults;
``reply_to`` builds the answer to one message the phone decrypted:

- ``reaction`` reacts to the received message id;
- ``interactive`` answers a business's interactive message with its first button (``button_reply``) or first
  list row (``list_reply``); to anything else it answers with the ids given in the spec;
- ``button`` (a template quick reply) answers a template's first quick-reply payload, else the given one;
- the others send the spec's object as it is (media with ``data_b64`` is encrypted and uploaded by the phone).

Replies to an interactive or template message carry ``context: {"from", "id"}`` of that message, like a real
reply; the phone only ever answers what it really decrypted (the caller passes the inbox entry).
"""

from __future__ import annotations

import copy
from typing import Any

from shared.wire.media import MEDIA_MESSAGE_TYPES

AUTO_REPLY_TYPES = ("text", "image", "location", "contacts", "button", "interactive", "reaction")

_PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
"""A 1x1 PNG: the default picture a phone answers with."""

_DEFAULTS: dict[str, Any] = {
    "text": {"body": "Thanks, got it"},
    "image": {"data_b64": _PIXEL_PNG, "mime_type": "image/png", "caption": "here you go"},
    "location": {"latitude": 38.8977, "longitude": -77.0365, "name": "The White House", "address": "Washington DC"},
    "contacts": [{"name": {"formatted_name": "Sam Lee", "first_name": "Sam"}, "phones": [{"phone": "+12025550124"}]}],
    "button": {"payload": "yes", "text": "Yes"},
    "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
    "reaction": {"emoji": "\U0001f44d"},
}


_KNOWN = frozenset({"text", "location", "contacts", "interactive", "button", "reaction"} | MEDIA_MESSAGE_TYPES)


class ContentError(ValueError):
    """Content a phone cannot send; the admin API answers 400 with the message."""


def _str(obj: dict[str, Any], name: str, where: str, *, required: bool = True) -> None:
    value = obj.get(name)
    if (required or value is not None) and not (isinstance(value, str) and (value or not required)):
        raise ContentError(f"'{where}.{name}' must be a {'non-empty ' if required else ''}string")


def check(content: dict[str, Any]) -> None:
    """Raise ``ContentError`` unless ``content`` (``{"type", <type>: …}``) is a message a phone can send."""
    kind = content.get("type")
    if not isinstance(kind, str) or not isinstance(content.get(kind), dict | str | list):
        raise ContentError("'type' is required with a matching object, e.g. {'type':'text','text':{...}}")
    obj = content[kind]
    if kind not in _KNOWN:
        return  # anything else goes as given: tests use it to see what the client makes of unknown types
    if kind == "contacts":
        if not isinstance(obj, list) or not obj or not all(isinstance(c, dict) for c in obj):
            raise ContentError("'contacts' must be a non-empty list of contact objects")
        return
    if not isinstance(obj, dict):
        raise ContentError(f"'{kind}' must be an object")
    if kind == "text":
        _str(obj, "body", "text")
    elif kind == "location":
        for name in ("latitude", "longitude"):
            value = obj.get(name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ContentError(f"'location.{name}' must be a number")
        for name in ("name", "address", "url"):
            _str(obj, name, "location", required=False)
    elif kind == "interactive":
        reply = obj.get("type")
        if reply not in ("button_reply", "list_reply") or not isinstance(obj.get(reply), dict):
            raise ContentError("'interactive.type' must be 'button_reply' or 'list_reply' with its object")
        _str(obj[reply], "id", f"interactive.{reply}")
        _str(obj[reply], "title", f"interactive.{reply}")
        _str(obj[reply], "description", f"interactive.{reply}", required=False)
    elif kind == "button":
        _str(obj, "text", "button")
        _str(obj, "payload", "button", required=False)
    elif kind == "reaction":
        _str(obj, "message_id", "reaction")
        if not isinstance(obj.get("emoji"), str):  # "" removes a reaction
            raise ContentError("'reaction.emoji' must be a string")
    elif kind in MEDIA_MESSAGE_TYPES and "data_b64" not in obj and "direct_path" not in obj:
        raise ContentError(f"'{kind}' needs 'data_b64' and 'mime_type'")


def parse_auto_reply(spec: Any) -> dict[str, Any] | None:
    """``null`` (off) or ``{"type", <type>?: …}``; the type's object defaults to a plausible answer."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") not in AUTO_REPLY_TYPES:
        raise ContentError(f"'auto_reply' must be null or an object with 'type' one of {', '.join(AUTO_REPLY_TYPES)}")
    kind = str(spec["type"])
    unknown = set(spec) - {"type", kind}
    if unknown:
        raise ContentError(f"'auto_reply' has unknown field(s): {', '.join(sorted(unknown))}")
    obj = copy.deepcopy(spec.get(kind, _DEFAULTS[kind]))
    if kind == "reaction":
        if not isinstance(obj, dict):
            raise ContentError("'auto_reply.reaction' must be an object")
        check({"type": kind, kind: {"message_id": "-", **obj}})  # the id is the received message's
    else:
        check({"type": kind, kind: obj})
    return {"type": kind, kind: obj}


def reply_to(spec: dict[str, Any], received: dict[str, Any]) -> dict[str, Any]:
    """The content a phone with ``auto_reply`` = ``spec`` sends after decrypting ``received`` (an inbox entry)."""
    kind = str(spec["type"])
    obj = copy.deepcopy(spec[kind])
    context = {"from": received.get("from"), "id": received.get("id")}
    content: dict[str, Any] = {"type": kind, kind: obj}
    if kind == "reaction":
        obj["message_id"] = received.get("id")
    elif kind == "interactive":
        answer = _interactive_answer(received)
        if answer is not None:
            content[kind] = answer
            content["context"] = context
    elif kind == "button":
        payload = _quick_reply_payload(received)
        if payload is not None:
            content[kind] = {"payload": payload, "text": obj.get("text") or payload}
            content["context"] = context
    return content


def _interactive_answer(received: dict[str, Any]) -> dict[str, Any] | None:
    """``button_reply`` with the first button / ``list_reply`` with the first row of an interactive message."""
    interactive = received.get("interactive") if received.get("type") == "interactive" else None
    if not isinstance(interactive, dict):
        return None
    action = interactive.get("action")
    if not isinstance(action, dict):
        return None
    if interactive.get("type") == "button":
        for button in action.get("buttons") or []:
            reply = button.get("reply") if isinstance(button, dict) else None
            if isinstance(reply, dict) and isinstance(reply.get("id"), str):
                found = {"id": reply["id"], "title": str(reply.get("title", ""))}
                return {"type": "button_reply", "button_reply": found}
    if interactive.get("type") == "list":
        for section in action.get("sections") or []:
            for row in (section.get("rows") or []) if isinstance(section, dict) else []:
                if isinstance(row, dict) and isinstance(row.get("id"), str):
                    found = {"id": row["id"], "title": str(row.get("title", ""))}
                    if isinstance(row.get("description"), str):
                        found["description"] = row["description"]
                    return {"type": "list_reply", "list_reply": found}
    return None


def _quick_reply_payload(received: dict[str, Any]) -> str | None:
    """The first quick-reply payload of a template message (``components[].sub_type == quick_reply``)."""
    if received.get("type") != "template":
        return None
    template = received.get("template")
    components = template.get("components") if isinstance(template, dict) else None
    for component in components or []:
        if not isinstance(component, dict) or component.get("sub_type") != "quick_reply":
            continue
        for parameter in component.get("parameters") or []:
            if isinstance(parameter, dict) and isinstance(parameter.get("payload"), str):
                return str(parameter["payload"])
    return None
