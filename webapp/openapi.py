"""The OpenAPI 3.1 document of the REST API, generated from the live route table and the request models.

Each route may declare itself with ``@doc(...)``: its request model (the very pydantic model or type that
validates the body, so the contract cannot drift from the validation), its success payloads (pydantic models, or
msgspec structs when the answer relays a reply of the bus contract as it is) and the error
statuses it can answer.  Error statuses implied by the route's shape are added automatically (401 unless
public, 403 for admin-only routes, 400/413 with a body, 400 with query or header parameters, 404 with path
parameters,
503 when it calls coreapp).  Every route declares itself (``tests/contract/test_openapi_complete.py`` fails on
one that does not; ``undocumented_routes`` lists them); one without would still appear, with a permissive
body, so the document always lists every endpoint.  Success bodies are ``<payload> + meta``; errors are the On-Prem
envelope (``meta`` + ``errors``).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from aiohttp import hdrs, web
from pydantic import TypeAdapter

from webapp.auth import API_KEY_ROUTES
from webapp.envelope import dumps
from webapp.schemas.responses import ErrorEnvelope, SuccessEnvelope
from webapp.state import VERSION_KEY

F = TypeVar("F", bound=Callable[..., Any])

OPENAPI_PATH = "/v1/openapi.json"
_ATTR = "__openprem_operation__"
_REF = "#/components/schemas/{model}"
_STRUCT_REF = "#/components/schemas/{name}"
"""The same for msgspec, which names the placeholder differently."""
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")
_DOCUMENTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
API_KEY_SECURITY = "apiKeyAuth"
"""The security scheme of ``Authorization: Apikey <key>``, offered beside the bearer token on ``API_KEY_ROUTES``."""

BINARY: Mapping[str, Any] = {"type": "string", "format": "binary"}
"""Schema of a raw binary body (media, photos), for ``raw_body`` / ``raw_responses``."""
TEXT: Mapping[str, Any] = {"type": "string"}
"""Schema of a text body (PEM, Prometheus exposition)."""


def binary_content(media_types: Iterable[str]) -> dict[str, Mapping[str, Any]]:
    """``raw_body`` / ``raw_responses`` entry for raw bytes in any of ``media_types``."""
    return {media_type: BINARY for media_type in sorted(media_types)}


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class HeaderParam:
    """A request header the route reads (``Idempotency-Key``); ``Authorization`` is the security scheme's."""

    name: str
    schema: Mapping[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """What ``@doc`` records about a handler (see the module docstring)."""

    summary: str
    request: Any = None
    """A pydantic model (or any type ``TypeAdapter`` takes) for a JSON body; ``None``: no JSON body."""
    body_required: bool = True
    raw_body: Mapping[str, Mapping[str, Any]] | None = None
    """Non-JSON request bodies: media type -> schema (e.g. binary uploads, PEM text)."""
    responses: Mapping[int, Any] = field(default_factory=lambda: {200: None})
    """Status -> payload type (merged with ``meta``); ``None`` for a body that is only ``meta``."""
    raw_responses: Mapping[int, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    """Status -> media type -> schema for non-JSON bodies (may add to a JSON one for the same status)."""
    errors: Iterable[int] = ()
    query: Sequence[QueryParam] = ()
    headers: Sequence[HeaderParam] = ()
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    public: bool = False
    basic_auth: bool = False
    admin: bool = False
    rpc: bool = False
    tags: Sequence[str] = ()
    description: str = ""
    hidden: bool = False
    """Left out of the document (catch-all routes that only exist to answer an error)."""


def doc(summary: str, **kwargs: Any) -> Callable[[F], F]:
    """Declare a handler's contract; the handler is returned unchanged (order with ``@routes.x`` is free)."""
    operation = Operation(summary, **kwargs)

    def decorate(handler: F) -> F:
        setattr(handler, _ATTR, operation)
        return handler

    return decorate


def operation_of(handler: Any) -> Operation | None:
    found = getattr(handler, _ATTR, None)
    return found if isinstance(found, Operation) else None


def undocumented_routes(app: web.Application) -> list[str]:
    """``"METHOD path"`` of every route (catch-alls included) whose handler carries no ``@doc``."""
    missing = []
    for route in app.router.routes():
        if route.resource is None or route.method == hdrs.METH_HEAD:
            continue  # HEAD comes with GET
        if operation_of(route.handler) is None:
            missing.append(f"{route.method} {route.resource.canonical}")
    return missing


def _error_statuses(op: Operation, path_params: Sequence[str]) -> set[int]:
    statuses = set(op.errors)
    if not op.public:
        statuses.add(401)
    if op.admin:
        statuses.add(403)
    if op.request is not None or op.raw_body is not None:
        statuses |= {400, 413}
    if op.query or op.headers:
        statuses.add(400)
    if path_params:
        statuses.add(404)
    if op.rpc:
        statuses.add(503)
    return statuses


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


class _Builder:
    """Collects every type first, then renders them in one pydantic pass so shared models get one name, and
    the msgspec structs (replies of the bus contract relayed as they are) in one msgspec pass beside it."""

    def __init__(self) -> None:
        self._adapters: dict[tuple[int, str], tuple[Any, str]] = {}
        self._structs: dict[int, type[msgspec.Struct]] = {}

    def want(self, tp: Any, mode: str) -> tuple[int, str]:
        key = (id(tp), mode)
        if _is_struct(tp):
            self._structs.setdefault(id(tp), tp)
        else:
            self._adapters.setdefault(key, (tp, mode))
        return key

    def render(self) -> tuple[dict[tuple[int, str], dict[str, Any]], dict[str, Any]]:
        inputs = [(key, mode, TypeAdapter(tp)) for key, (tp, mode) in self._adapters.items()]
        schemas, defs = TypeAdapter.json_schemas(inputs, ref_template=_REF)  # type: ignore[arg-type]
        rendered: dict[tuple[int, str], dict[str, Any]] = {(k[0], m): dict(v) for (k, m), v in schemas.items()}
        components: dict[str, Any] = dict(defs.get("$defs", {}))
        structs = list(self._structs.values())
        if structs:
            # A struct reads and writes the same JSON: one schema serves both modes.
            struct_schemas, struct_components = msgspec.json.schema_components(structs, ref_template=_STRUCT_REF)
            for tp, schema in zip(structs, struct_schemas, strict=True):
                for mode in ("validation", "serialization"):
                    rendered[(id(tp), mode)] = dict(schema)
            for name, schema in struct_components.items():
                if components.setdefault(name, schema) != schema:
                    raise ValueError(f"OpenAPI component {name!r} is both a pydantic model and a msgspec struct")
        return rendered, components


def build_openapi(app: web.Application, version: str) -> dict[str, Any]:
    builder = _Builder()
    envelope_keys = (builder.want(SuccessEnvelope, "serialization"), builder.want(ErrorEnvelope, "serialization"))
    pending: list[tuple[str, str, Operation | None, list[str]]] = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method not in _DOCUMENTED_METHODS:
            continue
        op = operation_of(route.handler)
        if op is not None and op.hidden:
            continue
        path = _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", resource.canonical)
        params = _PATH_PARAM.findall(resource.canonical)
        if op is not None:
            if op.request is not None:
                builder.want(op.request, "validation")
            for payload in op.responses.values():
                if payload is not None:
                    builder.want(payload, "serialization")
        pending.append((path, route.method.lower(), op, params))

    rendered, components = builder.render()
    success_ref, error_ref = (rendered[(k[0], "serialization")] for k in envelope_keys)

    def schema_of(tp: Any, mode: str) -> dict[str, Any]:
        return rendered[(id(tp), mode)]

    paths: dict[str, dict[str, Any]] = {}
    for path, method, op, params in sorted(pending, key=lambda p: (p[0], p[1])):
        entry = (
            _operation(method, path, op, params, schema_of, success_ref, error_ref)
            if op is not None
            else _undocumented(method, path, params, error_ref)
        )
        paths.setdefault(path, {})[method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "OpenPrem REST API",
            "version": version,
            "description": "WhatsApp Business On-Premises API compatible. Generated from the route table and "
            "the pydantic models that validate requests.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basicAuth": {"type": "http", "scheme": "basic"},
                API_KEY_SECURITY: {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Authorization: Apikey <key>` with the key set in `WA_WEB_API_KEY` (monitoring "
                    "only: " + ", ".join(f"GET {path}" for path in sorted(API_KEY_ROUTES)) + ").",
                },
            },
        },
        "security": [{"bearerAuth": []}],
    }


def _path_parameters(params: Sequence[str], declared: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(declared.get(name, {"type": "string", "minLength": 1})),
        }
        for name in params
    ]


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _operation(
    method: str,
    path: str,
    op: Operation,
    params: Sequence[str],
    schema_of: Callable[[Any, str], dict[str, Any]],
    success_ref: dict[str, Any],
    error_ref: dict[str, Any],
) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary, "operationId": _operation_id(method, path)}
    if op.description:
        out["description"] = op.description
    if op.tags:
        out["tags"] = list(op.tags)
    parameters = _path_parameters(params, op.path_params)
    parameters += [
        {"name": q.name, "in": "query", "required": q.required, "schema": dict(q.schema), "description": q.description}
        for q in op.query
    ]
    parameters += [
        {"name": h.name, "in": "header", "required": h.required, "schema": dict(h.schema), "description": h.description}
        for h in op.headers
    ]
    if parameters:
        out["parameters"] = parameters
    content: dict[str, Any] = {}
    if op.request is not None:
        content.update(_json(schema_of(op.request, "validation")))
    for media_type, schema in (op.raw_body or {}).items():
        content[media_type] = {"schema": dict(schema)}
    if content:
        out["requestBody"] = {"required": op.body_required, "content": content}
    if op.public:
        out["security"] = []
    elif op.basic_auth:
        out["security"] = [{"basicAuth": []}]
    elif method == "get" and path in API_KEY_ROUTES:
        out["security"] = [{"bearerAuth": []}, {API_KEY_SECURITY: []}]
    responses: dict[str, Any] = {}
    for status, payload in sorted(op.responses.items()):
        body = success_ref if payload is None else {"allOf": [schema_of(payload, "serialization"), success_ref]}
        responses[str(status)] = {"description": "success", "content": _json(body)}
    for status, media in sorted(op.raw_responses.items()):
        entry = responses.setdefault(str(status), {"description": "success", "content": {}})
        for media_type, schema in media.items():
            entry["content"][media_type] = {"schema": dict(schema)}
    for status in sorted(_error_statuses(op, params)):
        responses.setdefault(str(status), {"description": "error envelope", "content": _json(error_ref)})
    out["responses"] = responses
    return out


def _undocumented(method: str, path: str, params: Sequence[str], error_ref: dict[str, Any]) -> dict[str, Any]:
    """A route without ``@doc``: any body, any success, errors in the envelope."""
    out: dict[str, Any] = {
        "summary": "(not yet documented)",
        "operationId": _operation_id(method, path),
        "responses": {
            "2XX": {"description": "success", "content": {"*/*": {"schema": {}}}},
            "default": {"description": "error envelope", "content": _json(error_ref)},
        },
    }
    if params:
        out["parameters"] = _path_parameters(params, {})
    if method in ("post", "put", "patch"):
        out["requestBody"] = {"required": False, "content": {"application/json": {"schema": {}}}}
    return out


def _operation_id(method: str, path: str) -> str:
    """``put /v1/users/{username}`` → ``put_v1_users_username``: unique per route, stable across builds."""
    return method + "_" + "_".join(re.findall(r"[A-Za-z0-9]+", path))


async def openapi_handler(request: web.Request) -> web.Response:
    """The document, built on first use per application (its routes are frozen once it runs)."""
    app = request.app
    body = _CACHE.get(app)
    if body is None:
        body = _CACHE[app] = dumps(build_openapi(app, app[VERSION_KEY]))
    return web.Response(body=body, content_type="application/json", headers={hdrs.CACHE_CONTROL: "no-cache"})


_CACHE: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()
