"""What ``messages.send`` encrypts: the On-Prem message object without ``to`` (contracts §4), after the checks
only coreapp can make (templates against the synced cache, media through the media service).

webapp has validated the shape already; here a body is only re-checked as far as needed not to crash on a
caller that skipped webapp.  The content carries ``type`` and the type's object (plus ``preview_url`` for
text), nothing of the envelope (``recipient_type``, ``ttl``).  Templates go out exactly as requested: the phone
renders them from its own copy, as a real phone does; the hydrated body is only used for the length check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from coreapp.services import template_check
from coreapp.storage.templates import TemplateStore
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId

log = logging.getLogger("openprem.coreapp.outbound")

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
MESSAGE_TYPES = frozenset({"text", "location", "contacts", "interactive", "template", "hsm", "reaction"} | MEDIA_TYPES)


class MediaPreparer(Protocol):
    """The media service's part in sending (``coreapp.services.media.MediaService``)."""

    async def prepare_outbound(self, message_type: str, media: dict[str, Any]) -> dict[str, Any]:
        """The media object to encrypt for ``media`` (``id`` or ``link``): url, keys, hashes after upload."""
        ...


class MessageComposer:
    def __init__(
        self,
        templates: TemplateStore,
        media: Callable[[], MediaPreparer | None],
        *,
        identity_check: Callable[[WaId], Awaitable[None]] | None = None,
    ) -> None:
        self._templates = templates
        self._media = media
        self._identity_check = identity_check
        """``IdentityAcks.check_send``: 1028 while the recipient's identity change is unacknowledged."""

    async def compose(self, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``(type, content)`` for a validated send body; ``ApiError`` for what cannot be sent."""
        kind = payload.get("type", "text")
        if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"type: message type {kind!r} is not supported")
        to = payload.get("to")
        if self._identity_check is not None and isinstance(to, str):
            await self._identity_check(WaId(to))  # before any media upload: a refused send costs nothing
        body = payload.get(kind)
        if kind == "contacts":
            if not isinstance(body, list) or not body:
                raise ApiError(ErrorCode.MISSING_PARAMETER, "contacts: at least one contact is required")
            return kind, {"type": kind, kind: body}
        if not isinstance(body, dict):
            raise ApiError(ErrorCode.MISSING_PARAMETER, f"{kind}: required parameter is missing")
        obj: dict[str, Any] = body
        if kind == "text":
            if not isinstance(obj.get("body"), str):
                raise ApiError(ErrorCode.MISSING_PARAMETER, "text.body is required")
            return kind, {"type": kind, kind: {"body": obj["body"]}, "preview_url": bool(payload.get("preview_url"))}
        if kind in MEDIA_TYPES:
            obj = await self._prepare_media(kind, obj)
        elif kind == "interactive":
            obj = await self._interactive(obj)
        elif kind == "template":
            obj = await self._template(obj)
        elif kind == "hsm":
            await self._check(_request(template_check.TemplateRequest.from_hsm, obj, "hsm"))
        content = {"type": kind, kind: obj}
        return kind, content

    async def _prepare_media(self, kind: str, media: dict[str, Any]) -> dict[str, Any]:
        service = self._media()
        if service is None:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"{kind}: media sending not available")
        return await service.prepare_outbound(kind, media)

    async def _interactive(self, interactive: dict[str, Any]) -> dict[str, Any]:
        header = interactive.get("header")
        if isinstance(header, dict) and header.get("type") in MEDIA_TYPES:
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
            if kind in MEDIA_TYPES:
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
    return any(isinstance(p, dict) and p.get("type") in MEDIA_TYPES for p in component.get("parameters", []))
