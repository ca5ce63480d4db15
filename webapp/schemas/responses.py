"""Response payloads for the OpenAPI document (reference §2.1, §2.11).

Only the document uses these (routes build plain dicts), so they describe what clients may rely on and allow
extra keys; the envelope models are the contract of every answer: ``meta`` always, ``errors`` on failure.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from shared.appsettings import ApplicationSettings
from shared.bus.contract.contacts import Contacts
from shared.bus.contract.health import Health
from shared.bus.contract.messages import GcResult
from shared.bus.contract.ops import Support as CoreSupport
from shared.config import BusKind


class Meta(BaseModel):
    api_status: Literal["deprecated", "experimental", "stable"]
    version: str


class SuccessEnvelope(BaseModel):
    """Every success body carries ``meta`` next to its payload."""

    meta: Meta


class ErrorEntry(BaseModel):
    code: int = Field(description="On-Prem error code (shared/errors.py ErrorCode)")
    title: str
    details: str | None = None
    href: str | None = None


class ErrorEnvelope(BaseModel):
    """Every failure: ``meta`` plus at least one error."""

    meta: Meta
    errors: list[ErrorEntry] = Field(min_length=1)


# --- users ---------------------------------------------------------------------------------------------------


class IssuedToken(BaseModel):
    token: str
    expires_after: str = Field(description="e.g. 2018-03-01 15:29:26+00:00")


class LoginResponse(BaseModel):
    users: list[IssuedToken]


class UserName(BaseModel):
    username: str


class UsersResponse(BaseModel):
    users: list[UserName]


class UserDetails(BaseModel):
    ROLES: Literal["ROLE_ADMIN", "ROLE_USER"]
    username: str


class UserDetailsResponse(BaseModel):
    users: list[UserDetails]


# --- account, health, messages, settings ---------------------------------------------------------------------


class VName(BaseModel):
    vname: str


class AccountCodeSent(BaseModel):
    account: list[VName]


class HealthResponse(msgspec.Struct):
    health: Health


class MessageIdEntry(BaseModel):
    id: str


class MessagesResponse(BaseModel):
    messages: list[MessageIdEntry]


class ApplicationSettingsDocument(ApplicationSettings):
    """GET adds the read-only ``wa_id`` once registered (reference §2.8)."""

    model_config = ConfigDict(extra="allow")
    wa_id: str | None = None


class ApplicationSettingsWrapper(BaseModel):
    application: ApplicationSettingsDocument


class ApplicationSettingsResponse(BaseModel):
    settings: ApplicationSettingsWrapper


# --- operations ----------------------------------------------------------------------------------------------


class MetricSample(BaseModel):
    labels: dict[str, str]
    value: float | None


class MetricFamily(BaseModel):
    data: list[MetricSample]
    help: str
    type: Literal["gauge", "counter"]


class StatsResponse(BaseModel):
    """``{"stats": {"app"|"db"|"web": {"<metric>": {...}}}}``."""

    stats: dict[str, dict[str, MetricFamily]]


class WebSupport(msgspec.Struct):
    version: str
    client_version: str
    python: str
    uptime_s: Annotated[float, msgspec.Meta(description="seconds since the webapp process started")]
    bus: BusKind


class SupportDetails(msgspec.Struct):
    webapp: WebSupport
    coreapp: Annotated[CoreSupport, msgspec.Meta(description="coreapp's support.get reply")] | None
    """``null`` when coreapp did not answer; ``coreapp_error`` then says why."""
    coreapp_error: str | None = None


class SupportResponse(msgspec.Struct):
    support: SupportDetails


class GcResponse(msgspec.Struct):
    gc: GcResult


# --- account extras, media, contacts -------------------------------------------------------------------------


class ShardCount(BaseModel):
    shards: int = Field(ge=1, description="1 without multiconnect; otherwise 2, 4, 8, 16 or 32")


class ShardsResponse(BaseModel):
    account: ShardCount


class MediaIdEntry(BaseModel):
    id: str = Field(description="UUID of the stored media")


class MediaUploadResponse(BaseModel):
    media: list[MediaIdEntry] = Field(min_length=1, max_length=1)


ContactsResponse = Contacts
"""``POST /v1/contacts`` answers coreapp's reply as it is."""


# --- media providers, backup, profile ------------------------------------------------------------------------


class ProviderBasicAuthView(BaseModel):
    username: str
    password: Literal["****"] = Field(description="always masked")


class ProviderConfigView(BaseModel):
    bearer: Literal["****"] | None = Field(default=None, description="always masked")
    basic: ProviderBasicAuthView | None = None


class MediaProviderView(BaseModel):
    name: str
    type: Literal["www"]
    url_prefix: str | None = Field(default=None, description="links the credentials may be sent to (ours)")
    config: ProviderConfigView


class ProvidersMedia(BaseModel):
    providers: list[MediaProviderView]


class ProvidersApplication(BaseModel):
    media: ProvidersMedia


class ProvidersSettings(BaseModel):
    application: ProvidersApplication


class ProvidersResponse(BaseModel):
    settings: ProvidersSettings


class BackupData(BaseModel):
    data: str = Field(description="the encrypted backup; POST it to /v1/settings/restore with the same password")


class BackupResponse(BaseModel):
    settings: BackupData


class AboutText(BaseModel):
    text: str


class AboutProfile(BaseModel):
    about: AboutText


class AboutSettings(BaseModel):
    profile: AboutProfile


class AboutResponse(BaseModel):
    settings: AboutSettings


class PhotoLink(BaseModel):
    link: str


class PhotoLinkProfile(BaseModel):
    photo: PhotoLink


class PhotoLinkSettings(BaseModel):
    profile: PhotoLinkProfile


class PhotoLinkResponse(BaseModel):
    """``GET /v1/settings/profile/photo?format=link``."""

    settings: PhotoLinkSettings


class BusinessProfileView(BaseModel):
    """Every field is present: those never set answer ``""`` / ``[]``."""

    address: str
    description: str
    email: str
    vertical: str
    websites: list[str]


class BusinessProfileWrapper(BaseModel):
    profile: BusinessProfileView


class BusinessSettings(BaseModel):
    business: BusinessProfileWrapper


class BusinessProfileResponse(BaseModel):
    settings: BusinessSettings


class ContactDetailsView(BaseModel):
    email: str
    landline_number: str | None = None
    mobile_number: str | None = None


class GrievanceOfficerView(ContactDetailsView):
    name: str


class ComplianceInfoView(BaseModel):
    """As posted, with ``entity_type_custom`` (``""`` unless ``OTHER``) and ``is_registered`` always present."""

    entity_name: str
    entity_type: str
    entity_type_custom: str
    is_registered: bool
    grievance_officer_details: GrievanceOfficerView
    customer_care_details: ContactDetailsView


class ComplianceInfoWrapper(BaseModel):
    compliance_info: ComplianceInfoView


class ComplianceSettings(BaseModel):
    business: ComplianceInfoWrapper


class ComplianceInfoResponse(BaseModel):
    settings: ComplianceSettings
