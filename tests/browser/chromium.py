"""Debian's Chromium + ChromeDriver under Selenium, headless, for the browser tests (no browser download).

``chromium_or_skip()`` skips the test when either binary or Selenium is missing, or fails it under
``WA_TEST_REQUIRE_SERVICES=1`` (CI installs them: ``.ci/run``).  ``Browser`` wraps the blocking WebDriver calls in
``asyncio.to_thread`` so the test's own servers (a webhook receiver on the same loop) keep answering meanwhile.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.services import services_required

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver",)
T = TypeVar("T")


def _first(candidates: tuple[str, ...], name: str) -> str | None:
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def chromium_or_skip() -> tuple[str, str]:
    """(chromium, chromedriver) paths; skip (or fail under WA_TEST_REQUIRE_SERVICES=1) when missing."""
    chromium = _first(CHROMIUM_CANDIDATES, "chromium")
    driver = _first(DRIVER_CANDIDATES, "chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver; pip selenium)"
        if services_required():
            pytest.fail(f"{message}; WA_TEST_REQUIRE_SERVICES=1 requires it", pytrace=False)
        pytest.skip(message)
    assert chromium is not None and driver is not None
    return chromium, driver


class Browser:
    """One headless Chromium with a fresh profile; every call runs in a worker thread."""

    def __init__(self, chromium: str, driver: str, profile_dir: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--ignore-certificate-errors",  # the webapp's self-signed certificate
            "--window-size=1280,1500",
            f"--user-data-dir={profile_dir}",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        os.environ.setdefault("SE_AVOID_STATS", "true")
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        self.driver.set_page_load_timeout(30)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def get(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return await self.run(self.driver.find_element, By.CSS_SELECTOR, css)

    async def text(self, css: str) -> str:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def read() -> str:
            try:
                return str(self.driver.find_element(By.CSS_SELECTOR, css).text)
            except (NoSuchElementException, StaleElementReferenceException):
                return ""

        return await self.run(read)

    async def visible(self, css: str) -> bool:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def check() -> bool:
            try:
                return bool(self.driver.find_element(By.CSS_SELECTOR, css).is_displayed())
            except (NoSuchElementException, StaleElementReferenceException):
                return False

        return await self.run(check)

    async def type(self, css: str, value: str) -> None:
        element = await self.find(css)
        await self.run(element.clear)
        await self.run(element.send_keys, value)

    async def click(self, css: str) -> None:
        element = await self.find(css)
        await self.run(element.click)

    async def wait_text(self, css: str, predicate: Callable[[str], bool], timeout_s: float, what: str) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            text = await self.text(css)
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; {css} shows {text!r}")
            await asyncio.sleep(0.25)

    async def wait_visible(self, css: str, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not await self.visible(css):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} ({css})")
            await asyncio.sleep(0.2)

    async def script(self, source: str, *args: Any) -> Any:
        return await self.run(self.driver.execute_script, source, *args)

    async def console_log(self) -> list[dict[str, Any]]:
        return list(await self.run(self.driver.get_log, "browser"))

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.run(self.driver.save_screenshot, str(path))

    async def close(self) -> None:
        await self.run(self.driver.quit)
