"""``python -m bench.failover``: how long a shard is without an owner when its owner is SIGKILLed (issue 11).

A multiconnect deployment as processes (one master, one shard, ``--standbys`` standbys; MariaDB or PostgreSQL,
a private authenticated Mosquitto, chatd) with the product's default lease timing (``WA_HA_*``). A client sends a
text every 50 ms (retrying 1017/1018/1011 with an ``Idempotency-Key``, as an On-Prem client does). Each round
SIGKILLs the shard's owner and measures **kill → the first message accepted after the kill reaching the network**
(its ``delivered`` webhook, so the successor had logged in, sent, and the phone answered); then the victim is
started again (it comes back as a standby) and the next round waits until every node is up. Prints the rounds
and the median and worst, and writes ``bench/results/failover-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from shared.config import HaSettings
from tests.e2e.harness import Api, WebhookReceiver, wait_until
from tests.ha.harness import PHONES, Multiconnect, connected_owners, health, send_retrying, setup_number
from tests.support.mosquitto import PrivateMosquitto
from tests.support.services import db_settings_for, drop_database

RESULTS = Path(__file__).resolve().parent / "results"


async def _round(cluster: Multiconnect, api: Api, receiver: WebhookReceiver, n: int) -> dict[str, Any]:
    nodes = await health(api)
    (victim,) = [name for name in cluster.coreapp_names if nodes.get(name, {}).get("gateway_status") == "connected"]
    stop = asyncio.Event()
    sent: list[tuple[str, float]] = []

    async def client() -> None:
        i = 0
        while not stop.is_set():
            message_id = await send_retrying(api, PHONES[0], f"failover {n}.{i}", f"failover-{n}-{i}", timeout_s=120)
            sent.append((message_id, time.monotonic()))
            i += 1
            await asyncio.sleep(0.05)

    after: list[str] = []
    async with asyncio.TaskGroup() as group:  # the sender ends with the round (or its failure)
        group.create_task(client())
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        cluster.proc(victim).kill()

        def delivered_after() -> bool:
            after[:] = [i for i, at in sent if at > killed_at]
            return any(receiver.first_seen(i, "delivered") < float("inf") for i in after)

        try:
            await receiver.wait_for(delivered_after, 120, "a message accepted after the kill delivered")
        finally:
            stop.set()
    first = min(receiver.first_seen(i, "delivered") for i in after)
    cluster.proc(victim).start()  # back as a standby
    await wait_until(lambda: _all_up(api, cluster), 60, "every node up again after the restart")
    return {"round": n, "victim": victim, "failover_s": round(first - killed_at, 2)}


async def _all_up(api: Api, cluster: Multiconnect) -> bool:
    nodes = await health(api)
    return set(cluster.coreapp_names) <= set(nodes) and connected_owners(nodes) == 1


async def run(backend: str, kills: int, standbys: int, workdir: Path) -> dict[str, Any]:
    db = db_settings_for(backend, workdir, prefix="failover_")
    await drop_database(db)
    broker = PrivateMosquitto.authenticated(workdir / "mosquitto")
    broker.start()
    extra = {
        "WA_KEYSTORE_KEY": base64.b64encode(os.urandom(32)).decode(),
        "WA_SANDBOX_RECEIPT_DELAY": "0.05",
        "WA_SANDBOX_READ_DELAY": "3600",
        "WA_LOG_LEVEL": "WARNING",
    }
    defaults = HaSettings()
    cluster = Multiconnect(
        workdir / "mc",
        db,
        broker.port,
        extra,
        mqtt_users=broker.users,
        masters=1,
        coreapps=1 + standbys,
        lease_ttl_s=defaults.lease_ttl_s,
    )
    receiver = WebhookReceiver()
    rounds: list[dict[str, Any]] = []
    try:
        await cluster.start()
        await receiver.start()
        async with aiohttp.ClientSession() as session:
            api = Api(session, cluster.web_url)
            await setup_number(cluster, api, receiver, shards=1)
            for n in range(1, kills + 1):
                result = await _round(cluster, api, receiver, n)
                rounds.append(result)
                print(f"failover: round {n}: SIGKILL {result['victim']} → {result['failover_s']:.2f} s", flush=True)
    finally:
        await receiver.stop()
        await cluster.stop()
        broker.stop()
        await drop_database(db)
    times = [r["failover_s"] for r in rounds]
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "backend": backend,
        "lease": {
            "ttl_s": defaults.lease_ttl_s,
            "renew_every_s": defaults.renew_every_s,
            "margin_s": defaults.margin_s,
        },
        "rounds": rounds,
        "median_s": round(statistics.median(times), 2) if times else None,
        "worst_s": max(times) if times else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    p.add_argument("--backend", choices=("mariadb", "postgres"), default="mariadb")
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--standbys", type=int, default=1)
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="openprem-failover-") as tmp:
        report = asyncio.run(run(args.backend, args.kills, args.standbys, Path(tmp)))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"failover-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"failover: median {report['median_s']} s, worst {report['worst_s']} s over {len(report['rounds'])} kills")
    print(f"failover: report {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
