"""The On-Prem response envelope and the JSON edge: every body in and out of ``/v1`` passes through here.

Success is the payload plus ``meta``; failure is ``meta`` plus ``errors`` (reference §2.0, DESIGN §11.5).
Request bodies are parsed with orjson and validated with pydantic; pydantic's error types are mapped onto
On-Prem codes in one table so every route reports the same code for the same mistake.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from shared.errors import ApiError, ErrorCode
from webapp.state import VERSION_KEY

M = TypeVar("M", bound=BaseModel)

CUSTOM_ERROR_PREFIX = "onprem_"
"""Validators raise ``PydanticCustomError("onprem_<code>", msg)`` to pick an On-Prem code themselves."""

_MAX_REPORTED_ERRORS = 10
MAX_JSON_BODY_BYTES = 1024 * 1024
"""``client_max_size`` for JSON bodies; media uploads (later) stream ``request.content`` instead."""


class HttpApiError(ApiError):
    """An ``ApiError`` whose HTTP status differs from the code's default (1005 is 401 for credentials).

    Extra headers travel with it, e.g. ``WWW-Authenticate`` on a 401.
    """

    def __init__(
        self,
        code: ErrorCode,
        details: str | None = None,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(code, details)
        self.http_status = status
        self.headers = dict(headers or {})


class ValidationFailed(ApiError):
    """Several field errors at once; the envelope lists each with its own code (all are 400)."""

    def __init__(self, errors: Sequence[ApiError]) -> None:
        super().__init__(errors[0].code, errors[0].details)
        self.errors = list(errors)


def meta(version: str) -> dict[str, str]:
    return {"api_status": "stable", "version": version}


def dumps(body: Any) -> bytes:
    return orjson.dumps(body)


def ok(
    request: web.Request,
    payload: Mapping[str, Any] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A success response: ``payload`` plus ``meta``."""
    body = dict(payload or {})
    body["meta"] = meta(request.app[VERSION_KEY])
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


def error_response(
    version: str,
    errors: Sequence[ApiError],
    status: int,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"meta": meta(version), "errors": [err.to_dict() for err in errors]}
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


async def read_json(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object.  Malformed JSON or a non-object is 1025; an empty body is ``{}`` or 1025.

    ``request.read`` enforces ``client_max_size``; the error middleware renders that as 413.
    """
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ApiError(ErrorCode.INVALID_REQUEST, "request body is empty; expected a JSON object")
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(ErrorCode.INVALID_REQUEST, "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.INVALID_REQUEST, "request body must be a JSON object")
    return data


def validate(model: type[M], data: Any) -> M:
    """``model.model_validate(data)`` with pydantic errors turned into On-Prem errors."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def validation_failed(exc: ValidationError, prefix: str = "") -> ValidationFailed:
    """Map each pydantic error: missing → 1008, unexpected key → 1010, custom ``onprem_<code>``, else 1009."""
    errors: list[ApiError] = []
    for err in exc.errors(include_url=False, include_input=False)[:_MAX_REPORTED_ERRORS]:
        path = prefix + field_path(err["loc"])
        kind = err["type"]
        if kind == "missing":
            errors.append(ApiError(ErrorCode.MISSING_PARAMETER, f"{path}: required parameter is missing"))
        elif kind == "extra_forbidden":
            errors.append(ApiError(ErrorCode.UNEXPECTED_PARAMETER, f"{path}: unexpected parameter"))
        elif kind.startswith(CUSTOM_ERROR_PREFIX) and kind[len(CUSTOM_ERROR_PREFIX) :].isdigit():
            code = ErrorCode.from_code(int(kind[len(CUSTOM_ERROR_PREFIX) :]))
            errors.append(ApiError(code, f"{path}: {err['msg']}"))
        else:
            errors.append(ApiError(ErrorCode.INVALID_PARAMETER, f"{path}: {err['msg']}"))
    if not errors:
        errors.append(ApiError(ErrorCode.INVALID_PARAMETER))
    return ValidationFailed(errors)


def field_path(loc: Sequence[int | str]) -> str:
    """``("text", "body")`` → ``text.body``; list indexes as ``[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "body"
