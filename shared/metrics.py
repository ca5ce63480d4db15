"""One rendering of Prometheus metric families for every stats endpoint (reference §2.11, DESIGN §9).

``/metrics`` (webapp), ``/v1/stats/app`` and ``/v1/stats/db`` (coreapp) all answer either Prometheus text or
the On-Prem JSON shape ``{"<metric>": {"data": [{"labels": {…}, "value": N}], "help": "…", "type": …}}``.
Both come from the same families here so the two formats can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST
"""Carries a charset: set it as the ``Content-Type`` header, never via aiohttp's ``content_type=``."""

_COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


class StaticCollector(Collector):
    """Families computed up front (some sources are async), exposed through the prometheus-client API."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return list(self._families)


def families_to_json(families: Iterable[Metric]) -> dict[str, Any]:
    """The §2.11 JSON map, one entry per sample name; ``type`` is ``gauge`` or ``counter`` as in the original.

    ``_count``/``_sum``/``_bucket`` samples of summaries and histograms are cumulative, hence counters; the
    ``_created`` timestamps are noise for this format and are left out.  NaN/inf (no data) become ``null``.
    """
    out: dict[str, Any] = {}
    for family in families:
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            kind = "counter" if family.type == "counter" or sample.name.endswith(_COUNTER_SUFFIXES) else "gauge"
            entry = out.setdefault(sample.name, {"data": [], "help": family.documentation, "type": kind})
            value: float | None = sample.value if math.isfinite(sample.value) else None
            entry["data"].append({"labels": dict(sample.labels), "value": value})
    return out


def prometheus_text(families: Iterable[Metric]) -> str:
    """Prometheus text exposition of ``families``."""
    return generate_latest(StaticCollector(families)).decode("utf-8")
