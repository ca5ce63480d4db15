"""The chaos run at CI size (``tests/chaos/run.py``): 300 messages to 20 phones and 15 inbound, while coreapp is
SIGKILLed once, chatd drops the connection twice, the private Mosquitto and the private MariaDB restart once.
Every invariant of the full ``make chaos`` run is asserted, among them that no retried message reaches a phone twice
or is stored twice (the clients retry with an ``Idempotency-Key``); the report goes to the test's tmp dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos.mariadb import mariadb_available
from tests.chaos.run import ChaosConfig, run_chaos, write_report
from tests.support.mosquitto import mosquitto_binary, skip_or_fail

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


async def test_chaos_small(tmp_path: Path) -> None:
    reason = mariadb_available() or (None if mosquitto_binary() else "mosquitto is not installed")
    if reason:
        skip_or_fail(reason)
    cfg = ChaosConfig(
        messages=300,
        phones=20,
        inbound=15,
        concurrency=16,
        core_kills=1,
        drops=2,
        mqtt_restarts=1,
        db_restarts=1,
        drain_timeout_s=180,
        stall_timeout_s=60,
        message_deadline_s=120,
    )
    report = await run_chaos(cfg, tmp_path / "work")
    _, md = write_report(report, tmp_path / "results")
    result = report["result"]
    assert result["ok"], f"{result['violations']}\n{md.read_text()}\n{json.dumps(result, indent=1)[:4000]}"
    outbound = result["outbound"]
    assert (outbound["retry_duplicates_on_phone"], outbound["stored_outbound_bodies_twice"]) == (0, 0), outbound
    assert len(report["events"]) == 5, report["events"]
    assert all(e["recovered_s"] is not None for e in report["events"]), report["events"]
