"""Webapp metrics (``/metrics``): request counts and latency by route template, bus round trips, logins, free disk
and its threshold.

Each ``WebApp`` owns its registry so several apps in one process (embedded mode, tests) never collide.
Labels are route templates, never concrete paths: phone numbers and ids must not become label values.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared.metrics import families_to_json

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WebMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "webapp_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "webapp_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rpc = Histogram(
            "webapp_rpc_duration_seconds",
            "Bus RPC round trips to coreapp by method and result (ok or the error code)",
            ["method", "result"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.logins = Counter(
            "webapp_logins", "Login attempts by result (ok or the error code)", ["result"], registry=self.registry
        )
        self.disk_critical = Gauge(
            "webapp_disk_critical",
            "1 while the directory has less free space than WA_DISK_MIN_FREE_MB (uploads are refused), else 0",
            ["dir"],
            registry=self.registry,
        )
        self.disk_free_bytes = Gauge(
            "webapp_disk_free_bytes", "Free bytes in the directory at the last check", ["dir"], registry=self.registry
        )
        self.disk_min_free_bytes = Gauge(
            "webapp_disk_min_free_bytes",
            "WA_DISK_MIN_FREE_MB in bytes: below it a directory is critical",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"  # clients may send any token as a method
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def prometheus_text(self) -> bytes:
        return generate_latest(self.registry)

    def as_json(self) -> dict[str, Any]:
        """The ``/v1/stats`` JSON shape (reference §2.11) under ``stats.web``, as coreapp renders its own."""
        return {"stats": {"web": families_to_json(self.registry.collect())}}
