"""The synchronous template checks of ``messages.send`` (pure: records in, template or ``ApiError`` out).

What the client can tell before sending (SANDBOX.md: "sync 2000/2001 errors where the client can tell"): the
template exists in the synced cache for this namespace, name and language and is approved (2001, or 2060-2062
for rejected/paused/disabled ones), and the body gets as many parameters as it has placeholders (2000).  The
wording follows the original client's messages ("Template X does not exist in en and locale US", "Number of
localizable_params (1) does not match the expected number of params (2)").  A ``template`` is checked like the
``hsm`` it replaced: its body parameters play the part of ``localizable_params``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from coreapp.models import TemplateRecord
from shared.errors import ApiError, ErrorCode

MAX_HYDRATED_BODY = 1024
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")
_STATUS_ERRORS = {
    "rejected": ErrorCode.TEMPLATE_REJECTED,
    "paused": ErrorCode.TEMPLATE_PAUSED,
    "disabled": ErrorCode.TEMPLATE_DISABLED,
}


@dataclass(frozen=True, slots=True)
class TemplateRequest:
    """The parts of a ``template`` or ``hsm`` send that the check needs."""

    namespace: str
    name: str
    language: str
    policy: str
    body_values: list[str]
    """One text per body parameter (its text, or the fallback/default value), in order."""

    @classmethod
    def from_template(cls, template: dict[str, Any]) -> TemplateRequest:
        body: dict[str, Any] = next((c for c in template.get("components", []) if c.get("type") == "body"), {})
        return cls(
            namespace=template["namespace"],
            name=template["name"],
            language=template["language"]["code"],
            policy=template["language"].get("policy", "deterministic"),
            body_values=[_parameter_text(p) for p in body.get("parameters", [])],
        )

    @classmethod
    def from_hsm(cls, hsm: dict[str, Any]) -> TemplateRequest:
        return cls(
            namespace=hsm["namespace"],
            name=hsm["element_name"],
            language=hsm["language"]["code"],
            policy=hsm["language"].get("policy", "deterministic"),
            body_values=[str(p.get("default", "")) for p in hsm.get("localizable_params", [])],
        )


def _parameter_text(parameter: dict[str, Any]) -> str:
    kind = parameter.get("type")
    value = parameter.get(kind) if isinstance(kind, str) else None
    if isinstance(value, dict):
        return str(value.get("fallback_value", ""))
    return str(value or "")


def _describe_language(code: str) -> str:
    language, _, locale = code.replace("-", "_").partition("_")
    return f"{language} and locale {locale}" if locale else language


def pick(records: Sequence[TemplateRecord], request: TemplateRequest) -> TemplateRecord:
    """The template to send: exact language; with ``fallback`` also another locale of the same language."""
    exact = [r for r in records if r.language == request.language]
    chosen = exact[0] if exact else None
    if chosen is None and request.policy == "fallback":
        base = request.language.replace("-", "_").partition("_")[0]
        same = [r for r in records if r.language.replace("-", "_").partition("_")[0] == base]
        approved = [r for r in same if r.status.lower() == "approved"]
        candidates = sorted(approved or same, key=lambda r: (r.language != base, r.language))
        chosen = candidates[0] if candidates else None
    where = f"Template {request.name} does not exist in {_describe_language(request.language)}"
    ns = f" (namespace {request.namespace})"
    if chosen is None:
        raise ApiError(ErrorCode.TEMPLATE_MISSING, where + ns)
    status = chosen.status.lower()
    if status != "approved":
        code = _STATUS_ERRORS.get(status, ErrorCode.TEMPLATE_MISSING)
        detail = f"Template {request.name} in {chosen.language} is {status}, not approved"
        raise ApiError(code, detail + ns)
    return chosen


def body_text(record: TemplateRecord) -> str:
    components = orjson.loads(record.components_json)
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == "BODY":
            return str(component.get("text", ""))
    return ""


def check(record: TemplateRecord, request: TemplateRequest) -> str:
    """The hydrated body; 2000 when the parameter count is wrong, 2005 when the result is too long."""
    text = body_text(record)
    expected = len(set(_PLACEHOLDER.findall(text)))
    given = len(request.body_values)
    if given != expected:
        raise ApiError(
            ErrorCode.TEMPLATE_PARAM_COUNT,
            f"Number of localizable_params ({given}) does not match the expected number of params ({expected})",
        )
    hydrated = hydrate(text, request.body_values)
    if len(hydrated) > MAX_HYDRATED_BODY:
        raise ApiError(
            ErrorCode.TEMPLATE_TEXT_TOO_LONG,
            f"the hydrated body of {request.name} has {len(hydrated)} characters; at most {MAX_HYDRATED_BODY}",
        )
    return hydrated


def hydrate(text: str, values: Sequence[str]) -> str:
    """``{{n}}`` replaced by the n-th value (placeholders are numbered from 1)."""

    def value(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        return values[index] if 0 <= index < len(values) else match.group(0)

    return _PLACEHOLDER.sub(value, text)
