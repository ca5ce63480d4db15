"""The browser tests' gate: missing Chromium skips, or fails under ``WA_TEST_REQUIRE_SERVICES=1`` (CI)."""

from __future__ import annotations

import pytest

from tests.browser import chromium


def test_missing_chromium_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chromium, "_first", lambda candidates, name: None)
    monkeypatch.delenv("WA_TEST_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium, chromedriver"):
        chromium.chromium_or_skip()
    monkeypatch.setenv("WA_TEST_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="WA_TEST_REQUIRE_SERVICES=1 requires it"):
        chromium.chromium_or_skip()
