"""``settings.*`` and ``certificates.*``: application settings, media providers, profile, business profile and
compliance info, backup/restore and the webhook CA (reference §2.8, §2.9, §2.13).

The documents themselves are owned by their schemas (``shared.appsettings.ApplicationSettings``,
``shared.profiles``); coreapp validates them again on arrival, because the bus is a boundary too.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared.bus.contract.types import JsonObject
from shared.bus.rpc import Empty, Method


class Application(msgspec.Struct):
    application: JsonObject
    """``ApplicationSettings.model_dump()`` plus the read-only ``wa_id`` once registered."""


class PatchApplication(msgspec.Struct):
    application: JsonObject
    """The partial document, validated by webapp."""


class Providers(msgspec.Struct):
    providers: list[JsonObject]


class SetProviders(msgspec.Struct):
    providers: Annotated[list[JsonObject], msgspec.Meta(min_length=1)]


class ProviderName(msgspec.Struct):
    name: str


class About(msgspec.Struct):
    text: str


class Photo(msgspec.Struct):
    content_type: Literal["image/jpeg", "image/png"]
    data: str
    """Base64 of the image."""


class BusinessProfile(msgspec.Struct):
    profile: JsonObject


class ComplianceInfo(msgspec.Struct):
    info: JsonObject
    """``shared.profiles.ComplianceInfo``: validated by webapp, again by coreapp."""


BACKUP_PASSWORD_MIN_CHARS = 8
"""A new backup's password is at least this long (a restore takes any: older backups may have shorter ones)."""


class BackupRequest(msgspec.Struct):
    password: str


class Backup(msgspec.Struct):
    data: str


class Restore(msgspec.Struct):
    password: str
    data: str


class CaPem(msgspec.Struct):
    pem: str | None


class SetCa(msgspec.Struct):
    pem: str


class Deleted(msgspec.Struct):
    deleted: bool


GET_APPLICATION = Method(
    "settings.get_application",
    Empty,
    Application,
    doc="`application`: `ApplicationSettings.model_dump()` + `wa_id` once registered",
)
PATCH_APPLICATION = Method(
    "settings.patch_application",
    PatchApplication,
    Application,
    doc="same as `settings.get_application`, after the change",
    errors="1009",
)
RESET_APPLICATION = Method(
    "settings.reset_application", Empty, Application, doc="same as `settings.get_application`, after the reset"
)
GET_MEDIA_PROVIDERS = Method(
    "settings.get_media_providers",
    Empty,
    Providers,
    doc='`providers` as posted, `bearer` and `basic.password` replaced by `"****"`',
)
POST_MEDIA_PROVIDERS = Method(
    "settings.post_media_providers",
    SetProviders,
    Providers,
    doc='all providers, masked as in get; `providers: [{name, type: "www", url_prefix?, config: {bearer} | {basic: '
    "{username, password}}}]` is upserted by name into the `media_providers` settings row, stored unmasked in that "
    "shape; the credentials are sent only to links under `url_prefix`",
    errors="1009",
)
DELETE_MEDIA_PROVIDER = Method(
    "settings.delete_media_provider", ProviderName, Empty, doc="`{}`", errors="1006 unknown name"
)
GET_PROFILE_ABOUT = Method("settings.get_profile_about", Empty, About, doc='`text` (`""` when unset)')
SET_PROFILE_ABOUT = Method("settings.set_profile_about", About, Empty, doc="`{}`; `text` ≤ 139", errors="1009")
GET_PROFILE_PHOTO = Method(
    "settings.get_profile_photo", Empty, Photo, doc="`content_type`, `data` (base64)", errors="1006 none set"
)
SET_PROFILE_PHOTO = Method(
    "settings.set_profile_photo", Photo, Empty, doc="`{}`; `data` ≤ 5 MB of that image type", errors="1009"
)
DELETE_PROFILE_PHOTO = Method("settings.delete_profile_photo", Empty, Empty, doc="`{}`")
GET_BUSINESS_PROFILE = Method(
    "settings.get_business_profile", Empty, BusinessProfile, doc="`profile`: the stored fields"
)
SET_BUSINESS_PROFILE = Method(
    "settings.set_business_profile",
    BusinessProfile,
    BusinessProfile,
    doc="`profile` after the merge: `address`, `description`, `email`, `vertical`, `websites` posted replace the "
    "stored ones, fields left out stay",
    errors="1009",
)
GET_COMPLIANCE_INFO = Method(
    "settings.get_compliance_info",
    Empty,
    ComplianceInfo,
    doc="`info`: the stored document (`ComplianceInfo.stored()`)",
    errors="1006 none set",
)
SET_COMPLIANCE_INFO = Method(
    "settings.set_compliance_info",
    ComplianceInfo,
    ComplianceInfo,
    doc="`info` as stored: the posted document replaces the `business_compliance_info` settings row",
    errors="1009",
)
BACKUP = Method(
    "settings.backup",
    BackupRequest,
    Backup,
    doc="`data`: base64 blob (scrypt N=2^17 + AES-256-GCM of account, identity, sessions, every `settings` row)",
    errors=f"1008, 1009 password shorter than {BACKUP_PASSWORD_MIN_CHARS} characters",
)
RESTORE = Method(
    "settings.restore",
    Restore,
    Empty,
    doc="`{}` after the write; with a registration in the blob the chat connection (re)starts with it",
    errors="1008, 1009 wrong password / not a backup / malformed",
)
GET_WEBHOOKS_CA = Method("certificates.get_webhooks_ca", Empty, CaPem, doc="`pem` (`null` when none is set)")
SET_WEBHOOKS_CA = Method(
    "certificates.set_webhooks_ca",
    SetCa,
    Empty,
    doc="`{}`; from then on webhook TLS trusts only this CA",
    errors="1008, 1009",
)
DELETE_WEBHOOKS_CA = Method("certificates.delete_webhooks_ca", Empty, Deleted, doc="`deleted`: whether one was set")
