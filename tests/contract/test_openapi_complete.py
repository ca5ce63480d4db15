"""The OpenAPI document is complete and generated from the validating models.

Every route the application mounts (catch-alls too) carries an ``@doc`` declaration, so nothing reaches the
document through the permissive "not yet documented" fallback, and every JSON request body is a component
schema rendered from a pydantic model, not a hand-written or empty one.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from pydantic import BaseModel

from shared.bus.local import LocalBus
from tests.contract.conftest import live_settings
from webapp.app import build_app
from webapp.auth import Authenticator
from webapp.metrics import WebMetrics
from webapp.openapi import build_openapi, operation_of, undocumented_routes

REF_PREFIX = "#/components/schemas/"
JSON = "application/json"
JSON_READERS = ("read_json(", "_read_large_json(", "orjson.loads(")


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    """The application exactly as ``WebApp`` builds it (nothing is started: only the route table matters)."""
    return build_app(live_settings(tmp_path), LocalBus(), cast(Authenticator, None), WebMetrics())


def _documented(app: web.Application) -> Iterator[tuple[str, str, Any]]:
    document = build_openapi(app, "test")
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _models(tp: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models a request type is made of (``Model``, ``list[Model]``, ``Annotated[...]``, unions)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
        return
    for arg in typing.get_args(tp):
        yield from _models(arg)


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def test_every_route_is_declared(app: web.Application) -> None:
    assert not undocumented_routes(app), "routes without @doc (webapp/openapi.py)"
    methods = {route.method for route in app.router.routes()}
    assert "*" in methods  # the catch-alls are among the routes checked
    for method, path, operation in _documented(app):
        assert operation["summary"] != "(not yet documented)", (method, path)
        assert "2XX" not in operation["responses"] and "default" not in operation["responses"], (method, path)

    async def bare(_request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_post("/v1/bare", bare)  # the check itself notices a route added without @doc
    assert undocumented_routes(app) == ["POST /v1/bare"]


def test_routes_that_read_json_declare_their_model(app: web.Application) -> None:
    """A handler that parses a JSON body (``read_json``, ``orjson.loads``) declares the model it validates with."""
    for route in app.router.routes():
        declared = operation_of(route.handler)
        assert declared is not None
        source = inspect.getsource(route.handler)
        if any(marker in source for marker in JSON_READERS):
            assert declared.request is not None, (route.method, route.resource and route.resource.canonical)


def test_json_bodies_are_component_schemas_of_pydantic_models(app: web.Application) -> None:
    document = build_openapi(app, "test")
    components = document["components"]["schemas"]
    handlers = {
        (route.method, route.resource.canonical): route.handler
        for route in app.router.routes()
        if route.resource is not None
    }
    json_bodies = 0
    for method, path, operation in _documented(app):
        body = operation.get("requestBody", {}).get("content", {})
        declared = operation_of(handlers[(method, path)])
        assert declared is not None
        if declared.request is None:
            assert JSON not in body, (method, path, "a JSON body without a request model")
            continue
        json_bodies += 1
        models = {model.__name__ for model in _models(declared.request)}
        assert models, (method, path, f"request type {declared.request!r} holds no pydantic model")
        refs = list(_refs(body[JSON]["schema"]))
        assert refs, (method, path, "the JSON body schema references no component")
        names = {ref.removeprefix(REF_PREFIX) for ref in refs}
        assert all(ref.startswith(REF_PREFIX) for ref in refs), (method, path, refs)
        assert names <= set(components), (method, path, names - set(components))
        assert names & models, (method, path, names, models)
    assert json_bodies >= 15


def test_raw_bodies_and_answers_name_their_media_types(app: web.Application) -> None:
    """Media uploads, the profile photo and certificates: raw bodies with the content types the routes take."""
    document = build_openapi(app, "test")["paths"]
    upload = document["/v1/media"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "audio/ogg; codecs=opus", "application/pdf", "image/webp"} <= set(upload)
    assert all(entry["schema"] == {"type": "string", "format": "binary"} for entry in upload.values())
    assert set(document["/v1/media"]["post"]["responses"]) >= {"201", "400", "401", "413", "415"}
    download = document["/v1/media/{media_id}"]["get"]["responses"]["200"]["content"]
    assert JSON not in download and set(download) == set(upload)
    photo = document["/v1/settings/profile/photo"]
    assert set(photo["post"]["requestBody"]["content"]) == {"image/jpeg", "image/png", "multipart/form-data"}
    assert set(photo["get"]["responses"]["200"]["content"]) == {JSON, "image/jpeg", "image/png"}
    for path in ("/v1/certificates/external", "/v1/certificates/webhooks/ca"):
        assert set(document[path]["post"]["requestBody"]["content"]) == {"text/plain"}
    assert set(document["/v1/certificates/external/ca"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
