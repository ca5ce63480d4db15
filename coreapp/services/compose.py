"""What ``messages.send`` encrypts: the On-Prem message object without ``to`` (contracts §4), after the checks
only coreapp can make (templates against the synced cache, media through the media service).

webapp has validated the shape already (the bus contract's ``SendMessage`` carries the type's object as the
JSON webapp's models checked); here a body is only re-checked as far as needed not to crash on a caller that
skipped webapp.  The content carries ``type`` and the type's object (plus ``preview_url`` for
text), nothing of the envelope (``recipient_type``, ``ttl``).  Templates go out exactly as requested: the phone
renders them from its own copy, as a real phone does; the hydrated body is only used for the length check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from coreapp.services import template_check
from coreapp.storage.templates import TemplateStore
from shared.bus.contract.messages import SendMessage
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId
from shared.message_types import OUTBOUND, MessageType

log = logging.getLogger("openprem.coreapp.outbound")


class MediaPreparer(Protocol):
    """The media service's part in sending (``coreapp.services.media.MediaService``)."""

    async def prepare_outbound(self, message_type: str, media: dict[str, Any]) -> dict[str, Any]:
        """The media object to encrypt for ``media`` (``id`` or ``link``): url, keys, hashes after upload."""
        ...


class MessageComposer:
    def __init__(
        self,
        templates: TemplateStore,
        media: MediaPreparer,
        *,
        identity_check: Callable[[WaId], Awaitable[None]] | None = None,
    ) -> None:
        self._templates = templates
        self._media = media
        self._identity_check = identity_check
        """``IdentityAcks.check_send``: 1028 while the recipient's identity change is unacknowledged."""

    async def compose(self, request: SendMessage) -> dict[str, Any]:
        """The content to encrypt for a validated send; ``ApiError`` for what cannot be sent."""
        kind = request.type
        if kind not in OUTBOUND:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"type: message type {kind.value!r} is not supported")
        if self._identity_check is not None:
            await self._identity_check(WaId(request.to))  # before any media upload: a refused send costs nothing
        body = request.body()
        if kind is MessageType.CONTACTS:
            if not isinstance(body, list) or not body:
                raise ApiError(ErrorCode.MISSING_PARAMETER, "contacts: at least one contact is required")
            return {"type": kind.value, kind.value: body}
        if not isinstance(body, dict):
            raise ApiError(ErrorCode.MISSING_PARAMETER, f"{kind.value}: required parameter is missing")
        obj: dict[str, Any] = body
        if kind is MessageType.TEXT:
            if not isinstance(obj.get("body"), str):
                raise ApiError(ErrorCode.MISSING_PARAMETER, "text.body is required")
            return {"type": kind.value, kind.value: {"body": obj["body"]}, "preview_url": request.preview_url is True}
        if kind.is_media:
            obj = await self._prepare_media(kind.value, obj)
        elif kind is MessageType.INTERACTIVE:
            obj = await self._interactive(obj)
        elif kind is MessageType.TEMPLATE:
            obj = await self._template(obj)
        elif kind is MessageType.HSM:
            await self._check(_request(template_check.TemplateRequest.from_hsm, obj, "hsm"))
        return {"type": kind.value, kind.value: obj}

    async def _prepare_media(self, kind: str, media: dict[str, Any]) -> dict[str, Any]:
        return await self._media.prepare_outbound(kind, media)

    async def _interactive(self, interactive: dict[str, Any]) -> dict[str, Any]:
        header = interactive.get("header")
        if isinstance(header, dict) and _is_media(header.get("type")):
            kind = str(header["type"])
            prepared = await self._prepare_media(kind, header.get(kind) or {})
            return {**interactive, "header": {**header, kind: prepared}}
        return interactive

    async def _template(self, template: dict[str, Any]) -> dict[str, Any]:
        await self._check(_request(template_check.TemplateRequest.from_template, template, "template"))
        components = template.get("components", [])
        if not any(_media_parameters(c) for c in components):
            return template
        prepared = [await self._template_component(c) for c in components]
        return {**template, "components": prepared}

    async def _template_component(self, component: dict[str, Any]) -> dict[str, Any]:
        if not _media_parameters(component):
            return component
        parameters = []
        for parameter in component.get("parameters", []):
            kind = parameter.get("type")
            if _is_media(kind):
                parameter = {**parameter, kind: await self._prepare_media(kind, parameter.get(kind) or {})}
            parameters.append(parameter)
        return {**component, "parameters": parameters}

    async def _check(self, request: template_check.TemplateRequest) -> None:
        record = template_check.pick(await self._templates.find(request.namespace, request.name), request)
        template_check.check(record, request)


def _request(
    parse: Callable[[dict[str, Any]], template_check.TemplateRequest], body: dict[str, Any], kind: str
) -> template_check.TemplateRequest:
    try:
        return parse(body)
    except (KeyError, TypeError, AttributeError):
        raise ApiError(ErrorCode.MISSING_PARAMETER, f"{kind}: namespace, name and language are required") from None


def _media_parameters(component: Any) -> bool:
    if not isinstance(component, dict):
        return False
    return any(isinstance(p, dict) and _is_media(p.get("type")) for p in component.get("parameters", []))


def _is_media(kind: object) -> bool:
    """Whether a ``type`` inside a message object (an interactive header, a template parameter) names media."""
    return MessageType.parse(kind).is_media
