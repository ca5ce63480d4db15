"""Periodic message GC: same rules and batches as PUT /v1/services/message/gc, on a randomised interval."""

from __future__ import annotations

import random
from datetime import timedelta

from sqlalchemy import select

from coreapp.maintenance.gc import GcPolicy, GcScheduler, MessageGc
from coreapp.storage.tables import message_receipt_log, messages
from coreapp.storage.tables_webhooks import webhook_outbox
from shared.config import DbSettings, MaintenanceSettings
from shared.tasks import TaskSupervisor
from tests.coreapp.conftest import CoreFactory, Sandbox, eventually
from tests.coreapp.test_ops import GARBAGE, ROWS, _ids, _seed


async def test_scheduler_collects_on_a_tiny_interval(
    backend: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await make_core(backend)
    assert core.app.gc_scheduler is not None and core.app.gc_scheduler.interval_s == 3 * 3600  # the default
    await _seed(core)
    gc = MessageGc(core.app.stores.maintenance, GcPolicy(batch=2))  # 5 garbage rows: three batches
    scheduler = GcScheduler(gc, core.app.stores.settings, interval_s=0.05, jitter=0.5)
    supervisor = TaskSupervisor("test-gc")
    scheduler.start(supervisor)
    try:

        async def collected_twice() -> bool:
            return gc.runs >= 2

        await eventually(collected_twice)
    finally:
        await supervisor.close()

    kept = set(ROWS) - GARBAGE
    assert "in-recent" in kept and "out-accepted-old" in kept and "out-sent-old" in kept
    assert await _ids(core, select(messages.c.id)) == kept
    assert await _ids(core, select(message_receipt_log.c.message_id)) == kept
    assert len(await _ids(core, select(webhook_outbox.c.event_id))) == 1  # the pending callback is untouched
    assert gc.deleted == len(GARBAGE)


async def test_inbound_retention_is_configurable(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await make_core(sqlite_db)
    await _seed(core)
    policy = GcPolicy.from_settings(MaintenanceSettings(gc_inbound_retention_days=0.5))
    assert policy.inbound == timedelta(hours=12)
    result = await MessageGc(core.app.stores.maintenance, policy).run(None)
    assert result.complete and result.deleted == len(GARBAGE) + 1
    assert "in-recent" not in await _ids(core, select(messages.c.id))


async def test_periodic_gc_honours_the_application_settings(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory
) -> None:
    core = await make_core(sqlite_db)
    await _seed(core)
    assert core.app.message_gc is not None
    scheduler = GcScheduler(core.app.message_gc, core.app.stores.settings, interval_s=1, jitter=0)

    for partial in ({"db_garbagecollector_enable": False}, {"garbagecollector_enable": {"messages": False}}):
        await core.rpc("settings.reset_application")
        await core.rpc("settings.patch_application", {"application": partial})
        assert await scheduler.run_once() is None
        assert await _ids(core, select(messages.c.id)) == set(ROWS)
    assert scheduler.skipped == 2

    # On demand (PUT /v1/services/message/gc) ignores them: the operator asked.
    assert await core.rpc("messages.gc") == {"deleted": len(GARBAGE), "complete": True}
    await core.rpc("settings.reset_application")
    result = await scheduler.run_once()
    assert result is not None and result.deleted == 0
    stats = (await core.rpc("stats.app"))["metrics"]
    assert stats["message_gc_deleted_total"]["data"][0]["value"] == len(GARBAGE)
    assert stats["message_gc_runs_total"]["data"][0]["value"] == 2


def test_interval_is_randomised() -> None:
    settings = MaintenanceSettings(gc_interval_h=3, gc_jitter=0.5)
    scheduler = GcScheduler(
        None,  # type: ignore[arg-type]  # only the delays are exercised
        None,  # type: ignore[arg-type]
        settings.gc_interval_h * 3600,
        settings.gc_jitter,
        rng=random.Random(5),
    )
    delays = [scheduler.next_delay() for _ in range(200)]
    assert all(1.5 * 3600 <= d <= 4.5 * 3600 for d in delays)
    assert max(delays) - min(delays) > 3600  # spread, not a fixed period
