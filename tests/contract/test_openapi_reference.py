"""The OpenAPI document lists every route the On-Prem API had.

The catalogue is the reference's endpoint table (``../shared/reference/onprem-api.md`` §2.1), parsed at test time
when the file is there, else the copy below; ``ON_PREM_EXTRAS`` are the On-Prem routes that table leaves out.
Paths compare with their parameters' names blanked (the reference says ``/media/{id}``, OpenPrem
``/media/{media_id}``).  Every one of them is then a documented operation of the document, so the schemathesis
run (``test_schemathesis.py``) calls each of them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import pytest
from aiohttp import web

from shared.bus.local import LocalBus
from tests.contract.conftest import live_settings
from webapp.app import build_app
from webapp.auth import Authenticator
from webapp.metrics import WebMetrics
from webapp.openapi import build_openapi

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "onprem-api.md"
_METHODS_CELL = re.compile(r"[A-Z]+(\s*/\s*([A-Z]+|…))*")
_PARAM = re.compile(r"\{[^}]*\}")

COPIED_CATALOGUE: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/metrics"),
        ("POST", "/v1/account"),
        ("GET", "/v1/account/shards"),
        ("POST", "/v1/account/shards"),
        ("POST", "/v1/account/verify"),
        ("POST", "/v1/certificates/external"),
        ("GET", "/v1/certificates/external/ca"),
        ("DELETE", "/v1/certificates/webhooks/ca"),
        ("GET", "/v1/certificates/webhooks/ca"),
        ("POST", "/v1/certificates/webhooks/ca"),
        ("POST", "/v1/contacts"),
        ("GET", "/v1/contacts/{wa_id}/identity"),
        ("PUT", "/v1/contacts/{wa_id}/identity"),
        ("GET", "/v1/groups"),
        ("POST", "/v1/groups"),
        ("GET", "/v1/groups/{id}"),
        ("PUT", "/v1/groups/{id}"),
        ("DELETE", "/v1/groups/{id}/admins"),
        ("PATCH", "/v1/groups/{id}/admins"),
        ("DELETE", "/v1/groups/{id}/icon"),
        ("GET", "/v1/groups/{id}/icon"),
        ("POST", "/v1/groups/{id}/icon"),
        ("DELETE", "/v1/groups/{id}/invite"),
        ("GET", "/v1/groups/{id}/invite"),
        ("POST", "/v1/groups/{id}/leave"),
        ("DELETE", "/v1/groups/{id}/participants"),
        ("GET", "/v1/health"),
        ("POST", "/v1/media"),
        ("DELETE", "/v1/media/{id}"),
        ("GET", "/v1/media/{id}"),
        ("POST", "/v1/messages"),
        ("PUT", "/v1/messages/{id}"),
        ("PUT", "/v1/services/message/gc"),
        ("DELETE", "/v1/settings/account/two-step"),
        ("POST", "/v1/settings/account/two-step"),
        ("DELETE", "/v1/settings/application"),
        ("GET", "/v1/settings/application"),
        ("PATCH", "/v1/settings/application"),
        ("GET", "/v1/settings/application/media/providers"),
        ("POST", "/v1/settings/application/media/providers"),
        ("DELETE", "/v1/settings/application/media/providers/{name}"),
        ("POST", "/v1/settings/backup"),
        ("GET", "/v1/settings/business/profile"),
        ("POST", "/v1/settings/business/profile"),
        ("GET", "/v1/settings/profile/about"),
        ("PATCH", "/v1/settings/profile/about"),
        ("DELETE", "/v1/settings/profile/photo"),
        ("GET", "/v1/settings/profile/photo"),
        ("POST", "/v1/settings/profile/photo"),
        ("POST", "/v1/settings/restore"),
        ("GET", "/v1/stats/app"),
        ("GET", "/v1/stats/db"),
        ("GET", "/v1/stickerpacks"),
        ("GET", "/v1/stickerpacks/{id}"),
        ("GET", "/v1/stickerpacks/{id}/stickers"),
        ("GET", "/v1/support"),
        ("POST", "/v1/users"),
        ("POST", "/v1/users/login"),
        ("POST", "/v1/users/logout"),
        ("DELETE", "/v1/users/{username}"),
        ("GET", "/v1/users/{username}"),
        ("PUT", "/v1/users/{username}"),
    }
)
"""§2.1 as of this test's writing, for a checkout without ``../shared``."""

ON_PREM_EXTRAS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/v1/settings/business/compliance_info"),
        ("POST", "/v1/settings/business/compliance_info"),
        ("GET", "/v1/stats/app/internal"),
        ("GET", "/v1/stats/db/internal"),
    }
)
"""Documented by Meta's On-Prem reference pages but not in the §2.1 table."""


def parse_catalogue(markdown: str) -> frozenset[tuple[str, str]]:
    """``(METHOD, /v1/path)`` of every row of §2.1: ``GET / POST`` cells give one pair per method (``…`` is
    dropped), ``/stats/app, /stats/db`` one per path, and every path but ``/metrics`` takes the ``/v1`` prefix."""
    section = markdown.split("### 2.1 Endpoint catalogue", 1)[1].split("\n### ", 1)[0]
    found: set[tuple[str, str]] = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not _METHODS_CELL.fullmatch(cells[0]):
            continue
        methods = [m.strip() for m in cells[0].split("/") if m.strip() not in ("", "…")]
        for raw in cells[1].split(","):
            path = re.sub(r"\s*\(.*\)$", "", raw.strip())
            full = path if path == "/metrics" else "/v1" + path
            found.update((method, full) for method in methods)
    return frozenset(found)


def catalogue() -> frozenset[tuple[str, str]]:
    if REFERENCE.is_file():
        return parse_catalogue(REFERENCE.read_text(encoding="utf-8"))
    return COPIED_CATALOGUE


def _blank(path: str) -> str:
    return _PARAM.sub("{}", path)


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    return build_app(live_settings(tmp_path), LocalBus(), cast(Authenticator, None), WebMetrics())


def test_the_parser_reads_the_reference_table() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"{REFERENCE} is not in this checkout; the copied catalogue is used")
    parsed = parse_catalogue(REFERENCE.read_text(encoding="utf-8"))
    assert len(parsed) >= 60
    assert {("GET", "/v1/stats/db"), ("GET", "/metrics"), ("DELETE", "/v1/groups/{id}/icon")} <= parsed


def test_every_on_prem_route_is_a_documented_operation(app: web.Application) -> None:
    document = build_openapi(app, "test")
    documented = {
        (method.upper(), _blank(path))
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation["summary"] != "(not yet documented)"
    }
    wanted = {(method, _blank(path)) for method, path in catalogue() | ON_PREM_EXTRAS}
    missing = sorted(wanted - documented, key=lambda m: (m[1], m[0]))
    assert not missing, "On-Prem routes missing from /v1/openapi.json: " + ", ".join(f"{m} {p}" for m, p in missing)
