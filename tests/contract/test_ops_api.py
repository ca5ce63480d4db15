"""Operations endpoints over HTTP on the live stack: stats (both formats), /metrics, support, GC, the
unsupported Groups/Stickerpacks APIs and the public OpenAPI document."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from shared.errors import ErrorCode
from tests.contract.conftest import Live
from webapp.routes import ROUTES

APP_METRICS = (
    "callback_queue_size",
    "messages_received_total",
    "messages_sent_total",
    "message_receipts_total",
    "decrypt_failures_total",
    "chat_reconnects_total",
    "gateway_status",
    "uptime_seconds",
)


def assert_stats_shape(section: dict[str, Any]) -> None:
    """Reference §2.11: ``{"<metric>": {"data": [{"labels", "value"}], "help", "type": gauge|counter}}``."""
    assert section
    for name, family in section.items():
        assert set(family) == {"data", "help", "type"}, name
        assert family["type"] in ("gauge", "counter"), name
        for sample in family["data"]:
            assert set(sample) == {"labels", "value"}
            assert all(isinstance(v, str) for v in sample["labels"].values())


def only_value(section: dict[str, Any], name: str, **labels: str) -> float:
    matches = [s["value"] for s in section[name]["data"] if all(s["labels"].get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, section[name])
    return float(matches[0])


async def test_stats_app_json_and_prometheus(live: Live) -> None:
    status, body, _ = await live.call("GET", "/v1/stats/app")
    assert status == 200, body
    app = body["stats"]["app"]
    assert_stats_shape(app)
    for name in APP_METRICS:
        assert name in app, name
    assert app["callback_queue_size"]["type"] == "gauge"
    assert only_value(app, "callback_queue_size") == 0
    assert only_value(app, "gateway_status", status="unregistered") == 1
    assert only_value(app, "gateway_status", status="connected") == 0
    assert body["meta"]["api_status"] == "stable"

    status, text, headers = await live.call("GET", "/v1/stats/app?format=prometheus")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "callback_queue_size" in families
    assert "callback_requests_duration_ms" in families
    assert families["messages_received"].type == "counter"


async def test_stats_db_reports_transactions_and_row_counts(live: Live) -> None:
    await live.call("PUT", "/v1/services/message/gc")
    status, body, _ = await live.call("GET", "/v1/stats/db")
    assert status == 200, body
    db = body["stats"]["db"]
    assert_stats_shape(db)
    assert db["db_request_duration_us_count"]["type"] == "counter"
    assert only_value(db, "db_request_duration_us_count", db="coreapp", request="messages.gc") >= 1
    assert only_value(db, "db_table_rows", table="messages") == 0
    assert only_value(db, "db_table_rows", table="webhook_outbox") == 0

    status, text, headers = await live.call("GET", "/v1/stats/db?format=prometheus")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'db_request_duration_us_count{db="coreapp",request="messages.gc"}' in text


@pytest.mark.parametrize("path", ["/v1/stats/app", "/v1/stats/db", "/metrics"])
async def test_stats_reject_an_unknown_format_and_missing_auth(live: Live, path: str) -> None:
    status, body, _ = await live.call("GET", path + "?format=xml")
    assert status == 400 and body["errors"][0]["code"] == ErrorCode.INVALID_PARAMETER.code
    status, body, _ = await live.call("GET", path, auth=False)
    assert status == 401 and body["errors"][0]["code"] == ErrorCode.ACCESS_DENIED.code


async def test_webapp_metrics_share_the_shape(live: Live) -> None:
    await live.call("GET", "/v1/health")
    status, body, _ = await live.call("GET", "/metrics")
    assert status == 200
    web = body["stats"]["web"]
    assert_stats_shape(web)
    assert only_value(web, "webapp_http_requests_total", method="GET", route="/v1/health", status="200") >= 1
    status, text, headers = await live.call("GET", "/metrics?format=prometheus")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "webapp_http_requests_total" in text


async def test_support_has_versions_and_no_secrets(live: Live) -> None:
    status, body, _ = await live.call("GET", "/v1/support")
    assert status == 200, body
    support = body["support"]
    assert support["webapp"]["client_version"] == "2.41.2"
    assert support["webapp"]["bus"] == "LOCAL"
    core = support["coreapp"]
    assert core["gateway_status"] == "unregistered" and core["registered"] is False
    assert core["db_engine"] == "SQLITE" and core["bus"] == "LOCAL"
    assert core["counts"] == {"messages": 0, "message_receipt_log": 0, "webhook_outbox": 0, "webhook_dead": 0}
    text = str(body)
    for secret in (live.token, "N3w-Secret!", "secret", "password", "jwt"):
        assert secret not in text


async def test_gc_answers_its_count(live: Live) -> None:
    status, body, _ = await live.call("PUT", "/v1/services/message/gc")
    assert status == 200, body
    assert body["gc"] == {"deleted": 0, "complete": True}


@pytest.mark.parametrize(
    ("method", "path", "details"),
    [
        ("GET", "/v1/groups", "Groups API"),
        ("POST", "/v1/groups", "Groups API"),
        ("PUT", "/v1/groups/123", "Groups API"),
        ("PATCH", "/v1/groups/123", "Groups API"),  # not in the catalogue: the catch-all answers the same
        ("POST", "/v1/groups/123/icon", "Groups API"),
        ("DELETE", "/v1/groups/a/b/c", "Groups API"),
        ("GET", "/v1/stickerpacks", "Stickerpacks API"),
        ("POST", "/v1/stickerpacks/1/stickers", "Stickerpacks API"),
        ("PUT", "/v1/stickerpacks/1", "Stickerpacks API"),
    ],
)
async def test_groups_and_stickerpacks_are_refused_with_one_code(
    live: Live, method: str, path: str, details: str
) -> None:
    status, body, _ = await live.call(method, path, {"subject": "x"})
    assert status == 400, body
    (error,) = body["errors"]
    assert error["code"] == ErrorCode.INVALID_PARAMETER.code
    assert details in error["details"] and "not supported" in error["details"]


async def test_openapi_is_public_and_lists_every_route(live: Live) -> None:
    status, doc, _ = await live.call("GET", "/v1/openapi.json", auth=False)
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    routes = {
        (route.method.lower(), re.sub(r"\{([^}:]+):[^}]*\}", r"{\1}", route.path))  # {username:<regex>}
        for table in ROUTES
        for route in table
        if isinstance(route, web.RouteDef) and route.method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    }
    assert len(routes) > 30
    for method, path in routes:
        if "{tail}" in path:
            continue  # hidden catch-alls
        assert method in paths.get(path, {}), (method, path)
    send = paths["/v1/messages"]["post"]
    assert send["requestBody"]["content"]["application/json"]["schema"]
    assert {"201", "400", "401"} <= set(send["responses"])
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert paths["/v1/openapi.json"]["get"]["security"] == []
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == {"meta", "errors"}
