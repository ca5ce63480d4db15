"""Root fixtures shared by every test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.config import DbSettings
from tests.support.services import BACKENDS, db_settings_for, drop_database


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DbSettings]:
    """``DbSettings`` for a unique, fresh database on each backend; dropped after the test.

    Only settings are yielded: the test (or the app under test) creates the database through
    ``Database.connect``/``migrate``, as production does.
    """
    settings = db_settings_for(request.param, tmp_path)
    try:
        yield settings
    finally:
        await drop_database(settings)
