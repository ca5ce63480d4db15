"""The console's shell (``webapp.console``): public, no data, no inline script, a strict CSP on every asset; the data
it shows stays behind the token (the browser test, ``tests/browser``, drives the page itself)."""

from __future__ import annotations

import re

import pytest

from shared.config import DbEngine, DbSettings
from tests.webapp.conftest import Api
from webapp.console import ASSETS, CONTENT_SECURITY_POLICY, STATIC_DIR


@pytest.fixture
def app_db(tmp_path) -> DbSettings:
    return DbSettings(engine=DbEngine.SQLITE, name_prefix="t_", sqlite_path=tmp_path / "web.db")


async def test_the_page_and_its_assets_are_public_with_a_strict_csp(api: Api) -> None:
    for path, kind in (
        ("/console", "text/html"),
        ("/console/", "text/html"),
        ("/console/static/console.js", "text/javascript"),
        ("/console/static/console.css", "text/css"),
        ("/console/static/favicon.svg", "image/svg+xml"),
    ):
        status, body, headers = await api.call("GET", path)
        assert status == 200, (path, body)
        assert headers["Content-Type"].startswith(kind), path
        csp = headers["Content-Security-Policy"]
        assert csp == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"


async def test_unknown_assets_are_the_404_envelope(api: Api) -> None:
    for path in ("/console/static/nope.js", "/console/static/../__init__.py", "/console/static/%2e%2e%2fapp.py"):
        status, body, _ = await api.call("GET", path)
        assert status == 404, path
        assert body["errors"], path


async def test_the_data_it_reads_needs_the_token(api: Api) -> None:
    for path in ("/v1/support", "/v1/stats/app", "/v1/stats/db", "/v1/webhooks/log", "/v1/settings/application"):
        status, body, _ = await api.call("GET", path)
        assert status == 401, (path, body)


def test_no_inline_script_style_or_remote_asset() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/console/static/console.js" defer>']
    assert "<style" not in html and " style=" not in html and re.search(r"\son\w+=", html) is None
    for text in [html, *(asset.body.decode() for asset in ASSETS.values())]:
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    script = ASSETS["console.js"].body.decode()
    assert "innerHTML" not in script and "eval(" not in script
    assert "sessionStorage" in script and "localStorage" not in script
