"""The shipped monitoring, end to end: a real Prometheus with the compose scrape configuration scrapes a real
deployment (webapp, coreapp and chatd as OS processes) under a little load — sends to a sandbox phone, which reads
them and replies, and a webhook receiver — and every query of the shipped Grafana dashboard returns data.

A query that returns no series is a panel that would stay empty in Grafana: a metric renamed or never exported, a
label matcher that matches nothing, a job the scrape configuration lacks, or a scrape that fails (authorization,
TLS, format).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.e2e.harness import Api, WebhookReceiver, wait_until
from tests.e2e.test_walking_skeleton import BUSINESS_WA_ID, PHONE, inbox, login_and_register
from tests.monitoring.conftest import SCRAPE_INTERVAL_S, Monitored
from tests.monitoring.prometheus import PanelQuery, PrometheusServer, dashboard_queries, promtool_binary

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SENDS = 12
REPLIES = 3
JOBS = {"openprem-webapp", "openprem-coreapp", "openprem-db"}
RATE_WINDOW = f"{10 * SCRAPE_INTERVAL_S}s"


async def _load(monitored: Monitored, session: aiohttp.ClientSession) -> None:
    """Register, point the webhooks at a receiver, send SENDS texts (read by the phone) and get REPLIES back."""
    dep = monitored.deployment
    receiver = WebhookReceiver()
    await receiver.start()
    try:
        api = Api(session, dep.web_url)
        await login_and_register(dep, api, receiver, sent_status=True)
        ids: list[str] = []
        for batch in range(0, SENDS, 4):
            answers = await asyncio.gather(
                *(
                    api.call("POST", "/v1/messages", {"to": PHONE, "type": "text", "text": {"body": f"load {i}"}})
                    for i in range(batch, batch + 4)
                )
            )
            for status, body in answers:
                assert status in (200, 201), body
                ids.append(body["messages"][0]["id"])
        for i in range(REPLIES):
            status, body = await api.admin(
                "POST",
                f"{dep.admin_url}/admin/phones/{PHONE}/send",
                {"to": BUSINESS_WA_ID, "type": "text", "text": {"body": f"reply {i}"}},
            )
            assert status in (200, 201, 202), body
        await receiver.wait_for(
            lambda: {s["id"] for s in receiver.statuses("read")} >= set(ids) and len(receiver.messages()) >= REPLIES,
            60,
            "every send read and every reply received",
        )
        assert len({m["id"] for m in await inbox(api, dep, PHONE)} & set(ids)) == SENDS
    finally:
        await receiver.stop()


async def _value(prometheus: PrometheusServer, session: aiohttp.ClientSession, expr: str) -> float:
    result = await prometheus.query(session, expr)
    return float(result[0]["value"][1]) if result else float("nan")


async def _empty(
    prometheus: PrometheusServer, session: aiohttp.ClientSession, queries: list[PanelQuery]
) -> list[PanelQuery]:
    return [q for q in queries if not await prometheus.query(session, q.expr)]


async def test_every_dashboard_query_returns_data(monitored: Monitored) -> None:
    prometheus = monitored.prometheus
    promtool = promtool_binary()
    if promtool is not None:  # the same package ships it: the rendered configuration is valid as Prometheus sees it
        check = await asyncio.create_subprocess_exec(
            promtool, "check", "config", str(prometheus.config), stdout=asyncio.subprocess.PIPE, stderr=-2
        )
        out, _ = await check.communicate()
        assert check.returncode == 0, out.decode()

    async with aiohttp.ClientSession() as session:
        await _load(monitored, session)

        # Every node of every job is scraped (with the API key, over webapp's TLS, in Prometheus text).
        async def all_up() -> bool:
            targets = await prometheus.targets(session)
            return {t["labels"]["job"] for t in targets if t["health"] == "up"} == JOBS and all(
                t["health"] == "up" for t in targets
            )

        await wait_until(all_up, 15 * SCRAPE_INTERVAL_S, f"every target of {sorted(JOBS)} up")
        for target in await prometheus.targets(session):
            assert target["labels"]["node"] in ("webapp", "coreapp"), target["labels"]

        # The load is what Prometheus saw (the counters of a scrape after the load ended).
        async def load_scraped() -> bool:
            sent = await _value(prometheus, session, 'sum(messages_sent_total{result="sent"})')
            read = await _value(prometheus, session, 'sum(message_receipts_total{status="read"})')
            received = await _value(prometheus, session, "sum(messages_received_total)")
            return sent >= SENDS and read >= SENDS and received >= REPLIES

        await wait_until(load_scraped, 10 * SCRAPE_INTERVAL_S, "the load's counters in Prometheus")
        assert await _value(prometheus, session, 'sum(webapp_http_requests_total{route="/v1/messages"})') >= SENDS
        assert await _value(prometheus, session, 'sum(callback_requests_duration_ms_count{result="success"})') > 0
        assert await _value(prometheus, session, 'node_role{role="primary_master"}') == 1
        assert await _value(prometheus, session, 'gateway_status{status="connected"}') == 1

        # Every panel's every query has series (rates need two samples in the window: a few scrapes' grace).
        queries = dashboard_queries(RATE_WINDOW)
        assert len(queries) >= 20
        deadline = time.monotonic() + 10 * SCRAPE_INTERVAL_S
        empty = await _empty(prometheus, session, queries)
        while empty and time.monotonic() < deadline:
            await asyncio.sleep(SCRAPE_INTERVAL_S)
            empty = await _empty(prometheus, session, empty)
        assert not empty, "panels whose query returns no series:\n" + "\n".join(
            f"  {q.panel} [{q.ref}]: {q.expr}" for q in empty
        )
