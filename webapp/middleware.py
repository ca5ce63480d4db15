"""The three middlewares, outermost first: metrics → errors (the envelope) → auth.

``errors`` is the one place a failure becomes a response (DESIGN §11.5): ``ApiError`` keeps its code and
status; aiohttp's own 404/405/413 get On-Prem codes; pydantic errors that escape a route are still mapped;
a body that breaks its framing half-way is 1025/400 and a client that hung up one INFO line; anything else is a
1000/500 carrying a request id, with the traceback in the log only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from shared.errors import ApiError, ErrorCode
from webapp.auth import API_KEY_ROUTES, api_key_of, check_api_key, parse_bearer
from webapp.envelope import (
    MAX_JSON_BODY_BYTES,
    HttpApiError,
    ValidationFailed,
    error_response,
    validation_failed,
)
from webapp.openapi import OPENAPI_PATH
from webapp.protocol import summary
from webapp.state import AUTH_KEY, METRICS_KEY, PRINCIPAL_KEY, REQUEST_ID_KEY, VERSION_KEY, WEB_SETTINGS_KEY

log = logging.getLogger("openprem.webapp.http")

LOGIN_PATH = "/v1/users/login"
PUBLIC_ROUTES = frozenset({(hdrs.METH_POST, LOGIN_PATH), (hdrs.METH_GET, OPENAPI_PATH), (hdrs.METH_HEAD, OPENAPI_PATH)})
"""No bearer token: login (Basic credentials instead) and the read-only OpenAPI document.  Matched on the method
and the *matched* route, never the raw path: ``GET /v1/users/login`` is not public (401 without a token, then
405), and ``/v1/users/login/`` is the login route (``webapp.routing``)."""
UNMATCHED_ROUTE = "unmatched"


def route_template(request: web.Request) -> str:
    """``/v1/users/{username}`` rather than the concrete path, so labels and logs stay bounded."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED_ROUTE
    return resource.canonical


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away
        raise
    finally:
        request.app[METRICS_KEY].observe_request(
            request.method, route_template(request), status, time.perf_counter() - started
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = secrets.token_hex(8)
    request[REQUEST_ID_KEY] = request_id
    version = request.app[VERSION_KEY]
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _render_api_error(version, exc)
    except ValidationError as exc:
        response = _render_api_error(version, validation_failed(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _render_http_exception(request, version, exc)
    except web.RequestPayloadError as exc:  # the body broke its framing half-way (``webapp.protocol``)
        details = f"the request body is malformed: {summary(str(exc))}"  # never the body's own bytes
        log.warning("request %s: %s %s: %s", request_id, request.method, route_template(request), details)
        error = ApiError(ErrorCode.INVALID_REQUEST, details)
        response = error_response(version, [error], ErrorCode.INVALID_REQUEST.http_status)
        response.force_close()  # the framing is lost: nothing after it on this connection can be trusted
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and _client_gone(request):
            # The client hung up mid-request (its body stream says "Connection lost"): not our bug, and no one is
            # left to read an answer.
            log.info("request %s: the client went away: %s %s", request_id, request.method, route_template(request))
            error = ApiError(ErrorCode.INVALID_REQUEST, "the connection was lost while reading the request")
            response = error_response(version, [error], ErrorCode.INVALID_REQUEST.http_status)
        else:
            log.exception("request %s failed: %s %s", request_id, request.method, route_template(request))
            error = ApiError(ErrorCode.GENERIC, f"internal error; request id {request_id}")
            response = error_response(version, [error], ErrorCode.GENERIC.http_status)
    response.headers["X-Request-Id"] = request_id
    return response


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _render_api_error(version: str, exc: ApiError) -> web.Response:
    errors = exc.errors if isinstance(exc, ValidationFailed) else [exc]
    if isinstance(exc, HttpApiError):
        return error_response(version, errors, exc.http_status, exc.headers)
    return error_response(version, errors, exc.code.http_status)


def _render_http_exception(request: web.Request, version: str, exc: web.HTTPException) -> web.Response:
    headers: dict[str, str] = {}
    if exc.status == 404:
        error = ApiError(ErrorCode.NOT_FOUND, f"no such endpoint: {request.method} {request.path}")
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        headers["Allow"] = allowed
        error = ApiError(ErrorCode.NOT_FOUND, f"method {request.method} not allowed here; allowed: {allowed}")
    elif exc.status == 413:
        error = ApiError(ErrorCode.INVALID_REQUEST, f"request body larger than {MAX_JSON_BODY_BYTES} bytes")
    else:
        error = ApiError(ErrorCode.INVALID_REQUEST, exc.reason)
    return error_response(version, [error], exc.status, headers)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/v1`` route but ``PUBLIC_ROUTES``, and ``/metrics``, needs a bearer token; the principal goes on the
    request.  ``GET`` on ``API_KEY_ROUTES`` also takes ``Authorization: Apikey <key>`` (no principal then);
    elsewhere that header fails like any other non-bearer one."""
    path = request.path
    public = (request.method, route_template(request)) in PUBLIC_ROUTES
    if (path.startswith("/v1/") or path.rstrip("/") in ("/metrics", "/v1")) and not public:
        header = request.headers.get("Authorization")
        api_key = api_key_of(header)
        if api_key is not None and _takes_api_key(request):
            check_api_key(request.app[WEB_SETTINGS_KEY].api_key_sha256, api_key)
        else:
            token = parse_bearer(header)
            request[PRINCIPAL_KEY] = await request.app[AUTH_KEY].authenticate(token)
    return await handler(request)


def _takes_api_key(request: web.Request) -> bool:
    # The matched route, not the raw path: an unmatched path or a 405 never qualifies.
    return request.method in (hdrs.METH_GET, hdrs.METH_HEAD) and route_template(request) in API_KEY_ROUTES
