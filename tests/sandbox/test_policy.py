"""``chatd.policy`` rules that need no network: client version floors and the 24-hour window."""

from __future__ import annotations

import pytest

from chatd.policy import WINDOW_S, Policy, version_too_old


@pytest.mark.parametrize(
    ("version", "old"),
    [
        ("android 2.21.15.14", True),
        ("android 2.21.15.15", False),
        ("Android 2.21.16", False),
        ("2.21.9.99", False),  # no platform: not compared
        ("2.24.1.6", False),  # chatd's default
        ("SMBI 2.21.170.3", True),
        ("kaios 2.2130.10", False),
        ("web 2.2132.5", True),
        ("blackberry 1.0", False),  # unknown platform: never rejected
        ("nonsense", False),
    ],
)
def test_version_floors(version: str, old: bool) -> None:
    assert version_too_old(version) is old


def test_window_is_off_by_default_and_spares_templates() -> None:
    policy = Policy(store=None)  # type: ignore[arg-type]  # never touched without update()
    assert policy.outside_window("text", 1e9, None) is None
    policy.state.reengagement_window = True
    assert policy.outside_window("text", 1e9, None) is not None
    assert policy.outside_window("template", 1e9, None) is None
    assert policy.outside_window("text", 1e9, 1e9 - WINDOW_S) is None
    reject = policy.outside_window("text", 1e9, 1e9 - WINDOW_S - 1)
    assert reject is not None and reject.code == 470
