"""The base for request models: unknown keys are refused (1010), values are not coerced across types."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from shared.errors import ErrorCode


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def onprem_error(code: ErrorCode, message: str) -> PydanticCustomError:
    """A validator error that reports ``code`` instead of the default 1009 (see ``envelope.validation_failed``)."""
    return PydanticCustomError(f"onprem_{code.code}", message)
