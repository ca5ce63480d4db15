"""Request bodies of the settings endpoints beyond ``/v1/settings/application`` (models in ``shared.profiles``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from shared.bus.contract.settings import BACKUP_PASSWORD_MIN_CHARS
from shared.errors import ApiError, ErrorCode
from shared.profiles import MediaProvider
from webapp.envelope import validation_failed
from webapp.schemas.base import RequestModel

ProvidersBody = Annotated[list[MediaProvider], Field(min_length=1)]
"""``POST /v1/settings/application/media/providers``: a non-empty JSON array (the document's request type too)."""
_PROVIDERS: TypeAdapter[list[MediaProvider]] = TypeAdapter(ProvidersBody)


class BackupRequest(RequestModel):
    password: str = Field(min_length=BACKUP_PASSWORD_MIN_CHARS, max_length=1024)


class RestoreRequest(RequestModel):
    password: str = Field(min_length=1, max_length=1024)
    data: str = Field(min_length=1)


def validate_providers(body: Any) -> list[dict[str, Any]]:
    """A non-empty JSON array of providers, normalised as coreapp stores them; 1008/1009/1010."""
    if isinstance(body, list) and not body:
        raise ApiError(ErrorCode.MISSING_PARAMETER, "at least one provider is required")
    try:
        providers = _PROVIDERS.validate_python(body)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    return [p.model_dump(exclude_none=True) for p in providers]
