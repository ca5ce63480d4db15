"""Template messages and the legacy ``hsm`` (reference §2.6).

Only the request's shape is checked here: whether the template exists, is approved and takes this many
parameters is coreapp's check against the synced templates (2001 / 2000).  Parameters and components are one
model each, keyed by ``type``: the object named by ``type`` must be present (1008) and no other (1010), which
gives error paths such as ``template.components[1].parameters[0]``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from shared.errors import ErrorCode
from webapp.schemas.base import RequestModel, onprem_error
from webapp.schemas.message_base import MessageBase, limit, only_given, require_text
from webapp.schemas.message_media import CaptionedMedia, DocumentMedia

MAX_PARAM_LENGTH = 1024
"""A parameter can never be longer than the 1024-character body it goes into (longer: 2004)."""
MAX_QUICK_REPLY_BUTTONS = 3
MAX_URL_BUTTONS = 2
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")
_PARAM_FIELDS = ("text", "currency", "date_time", "image", "document", "video", "payload")
_PARAMS_BY_COMPONENT: dict[str, frozenset[str]] = {
    "header": frozenset({"text", "currency", "date_time", "image", "document", "video"}),
    "body": frozenset({"text", "currency", "date_time"}),
}
_PARAM_BY_BUTTON = {"quick_reply": "payload", "url": "text"}


class Language(RequestModel):
    """``deterministic`` (the default) uses exactly ``code``; ``fallback`` may use another locale of it."""

    policy: Literal["deterministic", "fallback"] = "deterministic"
    code: str

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _LANGUAGE.match(value):
            raise ValueError("must be a language code such as 'en' or 'en_US'")
        return value


def _namespace(value: str) -> str:
    if not value.strip():
        raise onprem_error(ErrorCode.NAMESPACE_EMPTY, "must not be empty")
    return limit(value, 128)


Namespace = Annotated[str, AfterValidator(_namespace)]


class DateTimeComponent(RequestModel):
    day_of_week: int | None = Field(default=None, ge=1, le=7)
    year: int | None = Field(default=None, ge=1, le=9999)
    month: int | None = Field(default=None, ge=1, le=12)
    day_of_month: int | None = Field(default=None, ge=1, le=31)
    hour: int | None = Field(default=None, ge=0, le=23)
    minute: int | None = Field(default=None, ge=0, le=59)
    calendar: Literal["GREGORIAN", "SOLAR_HIJRI"] | None = None


class UnixEpoch(RequestModel):
    timestamp: int


class Currency(RequestModel):
    fallback_value: str
    code: str
    amount_1000: int

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError("must be an ISO 4217 currency code such as 'USD'")
        return value


class DateTime(DateTimeComponent):
    """The fallback text, and optionally the date as fields, as ``component`` or as ``unix_epoch``."""

    fallback_value: str
    component: DateTimeComponent | None = None
    unix_epoch: UnixEpoch | None = None


class Parameter(RequestModel):
    type: Literal["text", "currency", "date_time", "image", "document", "video", "payload"]
    text: str | None = None
    currency: Currency | None = None
    date_time: DateTime | None = None
    image: CaptionedMedia | None = None
    document: DocumentMedia | None = None
    video: CaptionedMedia | None = None
    payload: str | None = None

    @field_validator("text", "payload")
    @classmethod
    def _text(cls, value: str) -> str:
        return require_text(value, MAX_PARAM_LENGTH, ErrorCode.TEMPLATE_PARAM_TOO_LONG)

    @model_validator(mode="after")
    def _matches_type(self) -> Parameter:
        only_given(self, self.type, _PARAM_FIELDS, "parameter")
        return self


class Component(RequestModel):
    type: Literal["header", "body", "button"]
    sub_type: Literal["quick_reply", "url"] | None = None
    index: int | str | None = None
    parameters: list[Parameter] = []

    @field_validator("type", "sub_type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("index")
    @classmethod
    def _index(cls, value: int | str) -> str:
        """``"0"`` in the docs, ``0`` in many SDKs: both are kept as the string."""
        text = str(value)
        if not text.isdigit() or not 0 <= int(text) <= 9:
            raise ValueError("must be a button position from 0 to 9")
        return str(int(text))

    @model_validator(mode="after")
    def _shape(self) -> Component:
        if self.type != "button":
            for name in ("sub_type", "index"):
                if getattr(self, name) is not None:
                    raise onprem_error(ErrorCode.UNEXPECTED_PARAMETER, f"'{name}' only goes with a button component")
            allowed = _PARAMS_BY_COMPONENT[self.type]
            if self.type == "header" and len(self.parameters) > 1:
                raise ValueError("a header takes at most one parameter")
        else:
            for name in ("sub_type", "index"):
                if getattr(self, name) is None:
                    raise onprem_error(ErrorCode.MISSING_PARAMETER, f"'{name}' is required for a button component")
            assert self.sub_type is not None
            allowed = frozenset({_PARAM_BY_BUTTON[self.sub_type]})
            if len(self.parameters) != 1:
                raise ValueError(f"a {self.sub_type} button takes exactly one parameter")
        for parameter in self.parameters:
            if parameter.type not in allowed:
                raise ValueError(
                    f"a {self.sub_type or self.type} component takes parameters of type {', '.join(sorted(allowed))}"
                )
        return self


class Template(RequestModel):
    namespace: Namespace
    name: str
    language: Language
    components: list[Component] = []

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return require_text(value, 512)

    @field_validator("components")
    @classmethod
    def _components(cls, value: list[Component]) -> list[Component]:
        for kind in ("header", "body"):
            if sum(1 for c in value if c.type == kind) > 1:
                raise ValueError(f"at most one {kind} component")
        buttons = [c for c in value if c.type == "button"]
        indexes = [c.index for c in buttons]
        if len(set(indexes)) != len(indexes):
            raise ValueError("button components need distinct indexes")
        if sum(1 for c in buttons if c.sub_type == "quick_reply") > MAX_QUICK_REPLY_BUTTONS:
            raise ValueError(f"at most {MAX_QUICK_REPLY_BUTTONS} quick_reply buttons")
        if sum(1 for c in buttons if c.sub_type == "url") > MAX_URL_BUTTONS:
            raise ValueError(f"at most {MAX_URL_BUTTONS} url buttons")
        return value


class TemplateMessage(MessageBase):
    type: Literal["template"]
    template: Template


class HsmCurrency(RequestModel):
    currency_code: str
    amount_1000: int

    @field_validator("currency_code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError("must be an ISO 4217 currency code such as 'USD'")
        return value


class HsmDateTime(RequestModel):
    component: DateTimeComponent | None = None
    unix_epoch: UnixEpoch | None = None

    @model_validator(mode="after")
    def _one(self) -> HsmDateTime:
        if self.component is None and self.unix_epoch is None:
            raise onprem_error(ErrorCode.MISSING_PARAMETER, "one of 'component' or 'unix_epoch' is required")
        if self.component is not None and self.unix_epoch is not None:
            raise ValueError("give either 'component' or 'unix_epoch', not both")
        return self


class LocalizableParam(RequestModel):
    default: str
    currency: HsmCurrency | None = None
    date_time: HsmDateTime | None = None

    @field_validator("default")
    @classmethod
    def _default(cls, value: str) -> str:
        return require_text(value, MAX_PARAM_LENGTH, ErrorCode.TEMPLATE_PARAM_TOO_LONG)

    @model_validator(mode="after")
    def _one_kind(self) -> LocalizableParam:
        if self.currency is not None and self.date_time is not None:
            raise ValueError("a parameter is a currency or a date_time, not both")
        return self


class Hsm(RequestModel):
    namespace: Namespace
    element_name: str
    language: Language
    localizable_params: list[LocalizableParam] = []

    @field_validator("element_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return require_text(value, 512)


class HsmMessage(MessageBase):
    type: Literal["hsm"]
    hsm: Hsm
