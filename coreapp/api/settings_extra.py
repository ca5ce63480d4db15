"""RPC methods for the settings beyond ``/v1/settings/application``: media providers, profile (about, photo),
business profile, backup/restore and the webhook CA.  Mounted with ``RpcApi.add_routes``.

State lives in ``settings`` rows (``shared.profiles.ROW_*``), stored in the shapes clients posted.  Bodies were
validated by webapp already; they are validated again here because the bus is a boundary too (1009 for all).
Secrets (provider credentials, backup password) are never logged and never sent back out.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from coreapp.api.handlers import Handler
from coreapp.services.backup import BackupService
from coreapp.storage.settings import SettingsStore, describe_validation_error
from coreapp.webhooks.ca import WebhookCa
from shared.bus.base import Payload
from shared.errors import ApiError, ErrorCode
from shared.profiles import (
    PHOTO_MAX_BYTES,
    PHOTO_TYPES,
    ROW_ABOUT,
    ROW_BUSINESS_PROFILE,
    ROW_MEDIA_PROVIDERS,
    ROW_PHOTO,
    About,
    BusinessProfile,
    MediaProvider,
    masked_provider,
)

log = logging.getLogger("openprem.coreapp.api.settings")


def _check(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(ErrorCode.INVALID_PARAMETER, describe_validation_error(exc)) from None


class SettingsExtraApi:
    def __init__(self, settings: SettingsStore, backup: BackupService, webhook_ca: WebhookCa) -> None:
        self._settings = settings
        self._backup = backup
        self._ca = webhook_ca

    def routes(self) -> Mapping[str, Handler]:
        return {
            "settings.get_media_providers": self.get_media_providers,
            "settings.post_media_providers": self.post_media_providers,
            "settings.delete_media_provider": self.delete_media_provider,
            "settings.get_profile_about": self.get_about,
            "settings.set_profile_about": self.set_about,
            "settings.get_profile_photo": self.get_photo,
            "settings.set_profile_photo": self.set_photo,
            "settings.delete_profile_photo": self.delete_photo,
            "settings.get_business_profile": self.get_business_profile,
            "settings.set_business_profile": self.set_business_profile,
            "settings.backup": self.backup,
            "settings.restore": self.restore,
            "certificates.get_webhooks_ca": self.get_webhooks_ca,
            "certificates.set_webhooks_ca": self.set_webhooks_ca,
            "certificates.delete_webhooks_ca": self.delete_webhooks_ca,
        }

    # --- media providers ------------------------------------------------------------------------------------

    async def _providers(self) -> list[dict[str, Any]]:
        stored = await self._settings.get(ROW_MEDIA_PROVIDERS)
        return [p for p in stored if isinstance(p, dict)] if isinstance(stored, list) else []

    async def get_media_providers(self, _payload: Payload) -> Payload:
        return {"providers": [masked_provider(p) for p in await self._providers()]}

    async def post_media_providers(self, payload: Payload) -> Payload:
        """Upsert by name: a posted provider replaces the stored one of that name; others stay."""
        posted = payload.get("providers")
        if not isinstance(posted, list) or not posted:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "providers must be a non-empty array")
        new = [_check(MediaProvider, p).model_dump(exclude_none=True) for p in posted]
        by_name = {p.get("name"): p for p in await self._providers()}
        for provider in new:
            by_name[provider["name"]] = provider
        await self._settings.put(ROW_MEDIA_PROVIDERS, list(by_name.values()))
        log.info("media providers set: %s", ", ".join(p["name"] for p in new))
        return {"providers": [masked_provider(p) for p in by_name.values()]}

    async def delete_media_provider(self, payload: Payload) -> Payload:
        name = payload.get("name")
        providers = await self._providers()
        kept = [p for p in providers if p.get("name") != name]
        if len(kept) == len(providers):
            raise ApiError(ErrorCode.NOT_FOUND, "no media provider by that name")
        await self._settings.put(ROW_MEDIA_PROVIDERS, kept)
        return {}

    # --- profile --------------------------------------------------------------------------------------------

    async def get_about(self, _payload: Payload) -> Payload:
        stored = await self._settings.get(ROW_ABOUT)
        text = stored.get("text") if isinstance(stored, dict) else None
        return {"text": text if isinstance(text, str) else ""}

    async def set_about(self, payload: Payload) -> Payload:
        about = _check(About, {"text": payload.get("text")})
        await self._settings.put(ROW_ABOUT, about.model_dump())
        return {}

    async def get_photo(self, _payload: Payload) -> Payload:
        stored = await self._settings.get(ROW_PHOTO)
        if not isinstance(stored, dict) or not stored.get("data"):
            raise ApiError(ErrorCode.NOT_FOUND, "no profile photo is set")
        return {"content_type": stored["content_type"], "data": stored["data"]}

    async def set_photo(self, payload: Payload) -> Payload:
        content_type, data = payload.get("content_type"), payload.get("data")
        if content_type not in PHOTO_TYPES or not isinstance(data, str):
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"photo must be one of {', '.join(PHOTO_TYPES)}")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "photo data is not base64") from None
        if not raw.startswith(PHOTO_TYPES[content_type]) or len(raw) > PHOTO_MAX_BYTES:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"not a {content_type} image of at most 5 MB")
        await self._settings.put(ROW_PHOTO, {"content_type": content_type, "data": data})
        log.info("profile photo set (%s, %d bytes)", content_type, len(raw))
        return {}

    async def delete_photo(self, _payload: Payload) -> Payload:
        await self._settings.put(ROW_PHOTO, None)
        return {}

    async def get_business_profile(self, _payload: Payload) -> Payload:
        stored = await self._settings.get(ROW_BUSINESS_PROFILE)
        return {"profile": stored if isinstance(stored, dict) else {}}

    async def set_business_profile(self, payload: Payload) -> Payload:
        """The fields posted replace the stored ones; fields left out stay (``""``/``[]`` clear one)."""
        posted = _check(BusinessProfile, payload.get("profile")).model_dump(exclude_unset=True)
        current = (await self.get_business_profile({}))["profile"]
        merged = {**current, **posted}
        await self._settings.put(ROW_BUSINESS_PROFILE, merged)
        return {"profile": merged}

    # --- backup / restore -----------------------------------------------------------------------------------

    async def backup(self, payload: Payload) -> Payload:
        return {"data": await self._backup.backup(payload.get("password"))}

    async def restore(self, payload: Payload) -> Payload:
        await self._backup.restore(payload.get("password"), payload.get("data"))
        return {}

    # --- webhook CA -----------------------------------------------------------------------------------------

    async def get_webhooks_ca(self, _payload: Payload) -> Payload:
        return {"pem": await self._ca.get_pem()}

    async def set_webhooks_ca(self, payload: Payload) -> Payload:
        await self._ca.set(payload.get("pem"))
        return {}

    async def delete_webhooks_ca(self, _payload: Payload) -> Payload:
        return {"deleted": await self._ca.clear()}
