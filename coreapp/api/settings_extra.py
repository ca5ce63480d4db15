"""RPC methods for the settings beyond ``/v1/settings/application``: media providers, profile (about, photo),
business profile and compliance info, backup/restore and the webhook CA.  Mounted on the ``RpcRegistry`` by ``mount``.

State lives in ``settings`` rows (``shared.profiles.ROW_*``), stored in the shapes clients posted.  Bodies were
validated by webapp already; the documents (providers, about, business profile) are validated again here
against the same ``shared.profiles`` models, because the bus is a boundary too (1009 for all).
Secrets (provider credentials, backup password) are never logged and never sent back out.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from coreapp.api.registry import RpcRegistry
from coreapp.services.backup import BackupService
from coreapp.storage.settings import SettingsStore, describe_validation_error
from coreapp.webhooks.ca import WebhookCa
from shared.bus.contract import settings
from shared.bus.rpc import Empty
from shared.errors import ApiError, ErrorCode
from shared.profiles import (
    PHOTO_MAX_BYTES,
    PHOTO_TYPES,
    ROW_ABOUT,
    ROW_BUSINESS_PROFILE,
    ROW_COMPLIANCE_INFO,
    ROW_MEDIA_PROVIDERS,
    ROW_PHOTO,
    About,
    BusinessProfile,
    ComplianceInfo,
    MediaProvider,
    masked_provider,
)

log = logging.getLogger("openprem.coreapp.api.settings")

M = TypeVar("M", bound=BaseModel)


def _check(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(ErrorCode.INVALID_PARAMETER, describe_validation_error(exc)) from None


class SettingsExtraApi:
    def __init__(self, settings_store: SettingsStore, backup: BackupService, webhook_ca: WebhookCa) -> None:
        self._settings = settings_store
        self._backup = backup
        self._ca = webhook_ca

    def mount(self, registry: RpcRegistry) -> None:
        registry.add(settings.GET_MEDIA_PROVIDERS, self.get_media_providers)
        registry.add(settings.POST_MEDIA_PROVIDERS, self.post_media_providers)
        registry.add(settings.DELETE_MEDIA_PROVIDER, self.delete_media_provider)
        registry.add(settings.GET_PROFILE_ABOUT, self.get_about)
        registry.add(settings.SET_PROFILE_ABOUT, self.set_about)
        registry.add(settings.GET_PROFILE_PHOTO, self.get_photo)
        registry.add(settings.SET_PROFILE_PHOTO, self.set_photo)
        registry.add(settings.DELETE_PROFILE_PHOTO, self.delete_photo)
        registry.add(settings.GET_BUSINESS_PROFILE, self.get_business_profile)
        registry.add(settings.SET_BUSINESS_PROFILE, self.set_business_profile)
        registry.add(settings.GET_COMPLIANCE_INFO, self.get_compliance_info)
        registry.add(settings.SET_COMPLIANCE_INFO, self.set_compliance_info)
        registry.add(settings.BACKUP, self.backup)
        registry.add(settings.RESTORE, self.restore)
        registry.add(settings.GET_WEBHOOKS_CA, self.get_webhooks_ca)
        registry.add(settings.SET_WEBHOOKS_CA, self.set_webhooks_ca)
        registry.add(settings.DELETE_WEBHOOKS_CA, self.delete_webhooks_ca)

    # --- media providers ------------------------------------------------------------------------------------

    async def _providers(self) -> list[dict[str, Any]]:
        stored = await self._settings.get(ROW_MEDIA_PROVIDERS)
        return [p for p in stored if isinstance(p, dict)] if isinstance(stored, list) else []

    async def get_media_providers(self, _request: Empty) -> settings.Providers:
        return settings.Providers(providers=[masked_provider(p) for p in await self._providers()])

    async def post_media_providers(self, request: settings.SetProviders) -> settings.Providers:
        """Upsert by name: a posted provider replaces the stored one of that name; others stay."""
        new = [_check(MediaProvider, p).model_dump(exclude_none=True) for p in request.providers]
        by_name = {p.get("name"): p for p in await self._providers()}
        for provider in new:
            by_name[provider["name"]] = provider
        await self._settings.put(ROW_MEDIA_PROVIDERS, list(by_name.values()))
        log.info("media providers set: %s", ", ".join(p["name"] for p in new))
        return settings.Providers(providers=[masked_provider(p) for p in by_name.values()])

    async def delete_media_provider(self, request: settings.ProviderName) -> Empty:
        providers = await self._providers()
        kept = [p for p in providers if p.get("name") != request.name]
        if len(kept) == len(providers):
            raise ApiError(ErrorCode.NOT_FOUND, "no media provider by that name")
        await self._settings.put(ROW_MEDIA_PROVIDERS, kept)
        return Empty()

    # --- profile --------------------------------------------------------------------------------------------

    async def get_about(self, _request: Empty) -> settings.About:
        stored = await self._settings.get(ROW_ABOUT)
        text = stored.get("text") if isinstance(stored, dict) else None
        return settings.About(text=text if isinstance(text, str) else "")

    async def set_about(self, request: settings.About) -> Empty:
        about = _check(About, {"text": request.text})
        await self._settings.put(ROW_ABOUT, about.model_dump())
        return Empty()

    async def get_photo(self, _request: Empty) -> settings.Photo:
        stored = await self._settings.get(ROW_PHOTO)
        if not isinstance(stored, dict) or not stored.get("data"):
            raise ApiError(ErrorCode.NOT_FOUND, "no profile photo is set")
        return settings.Photo(content_type=stored["content_type"], data=stored["data"])

    async def set_photo(self, request: settings.Photo) -> Empty:
        content_type = request.content_type
        try:
            raw = base64.b64decode(request.data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(ErrorCode.INVALID_PARAMETER, "photo data is not base64") from None
        if not raw.startswith(PHOTO_TYPES[content_type]) or len(raw) > PHOTO_MAX_BYTES:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"not a {content_type} image of at most 5 MB")
        await self._settings.put(ROW_PHOTO, {"content_type": content_type, "data": request.data})
        log.info("profile photo set (%s, %d bytes)", content_type, len(raw))
        return Empty()

    async def delete_photo(self, _request: Empty) -> Empty:
        await self._settings.put(ROW_PHOTO, None)
        return Empty()

    async def get_business_profile(self, _request: Empty) -> settings.BusinessProfile:
        stored = await self._settings.get(ROW_BUSINESS_PROFILE)
        return settings.BusinessProfile(profile=stored if isinstance(stored, dict) else {})

    async def set_business_profile(self, request: settings.BusinessProfile) -> settings.BusinessProfile:
        """The fields posted replace the stored ones; fields left out stay (``""``/``[]`` clear one)."""
        posted = _check(BusinessProfile, request.profile).model_dump(exclude_unset=True)
        current = (await self.get_business_profile(Empty())).profile
        merged = {**current, **posted}
        await self._settings.put(ROW_BUSINESS_PROFILE, merged)
        return settings.BusinessProfile(profile=merged)

    async def get_compliance_info(self, _request: Empty) -> settings.ComplianceInfo:
        stored = await self._settings.get(ROW_COMPLIANCE_INFO)
        if not isinstance(stored, dict):
            raise ApiError(ErrorCode.NOT_FOUND, "no business compliance info is set")
        return settings.ComplianceInfo(info=stored)

    async def set_compliance_info(self, request: settings.ComplianceInfo) -> settings.ComplianceInfo:
        """The posted document replaces the stored one (it is one legal entity's details, not a set of fields)."""
        stored = _check(ComplianceInfo, request.info).stored()
        await self._settings.put(ROW_COMPLIANCE_INFO, stored)
        log.info("business compliance info set (entity type %s)", stored.get("entity_type"))
        return settings.ComplianceInfo(info=stored)

    # --- backup / restore -----------------------------------------------------------------------------------

    async def backup(self, request: settings.BackupRequest) -> settings.Backup:
        return settings.Backup(data=await self._backup.backup(request.password))

    async def restore(self, request: settings.Restore) -> Empty:
        await self._backup.restore(request.password, request.data)
        return Empty()

    # --- webhook CA -----------------------------------------------------------------------------------------

    async def get_webhooks_ca(self, _request: Empty) -> settings.CaPem:
        return settings.CaPem(pem=await self._ca.get_pem())

    async def set_webhooks_ca(self, request: settings.SetCa) -> Empty:
        await self._ca.set(request.pem)
        return Empty()

    async def delete_webhooks_ca(self, _request: Empty) -> settings.Deleted:
        return settings.Deleted(deleted=await self._ca.clear())
