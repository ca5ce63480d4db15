"""The bench's one-line summary (issue 13 item 2): what counts as the product, and the line scripts parse."""

from __future__ import annotations

from bench.stats import summary, summary_line


def test_the_product_is_webapp_coreapp_database_and_broker() -> None:
    result = {
        "ours": {
            "api": {"per_s": 300.0, "errors": 0, "duplicate_ids": 0},
            "delivery": {"per_s": 298.5, "missing": 1, "duplicate_statuses": 2, "duplicate_events": 0},
        },
        "cpu_s_per_1k": {
            "webapp": 1.0,
            "coreapp": 2.0,
            "mariadbd": 0.5,
            "mosquitto": 0.125,
            "chatd": 1.7,
            "receiver": 0.2,
            "bench client": 0.5,
            "total": 6.025,
        },
        "floor": {"api": {"per_s": 1000.0}},
    }
    figures = summary(result)
    assert figures["product_cpu_s_per_1k"] == 3.625  # chatd, the receiver and the client are reported apart
    assert figures["chatd_cpu_s_per_1k"] == 1.7
    assert (figures["floor_ratio"], figures["lost"], figures["dup"]) == (0.3, 1, 2)
    line = summary_line(figures)
    assert line.startswith("bench: product_cpu_s_per_1k=3.625 ")
    assert dict(kv.split("=") for kv in line.removeprefix("bench: ").split())["floor_per_s"] == "1000.0"


def test_a_run_without_floor_says_so() -> None:
    figures = summary({"ours": {"api": {"per_s": 10.0}, "delivery": {}}, "cpu_s_per_1k": {"embedded": 2.0}})
    assert figures["floor_ratio"] is None and figures["product_cpu_s_per_1k"] == 2.0
    assert "floor_ratio=-" in summary_line(figures)
