"""Turning samples and webhook arrivals into the numbers of the report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.load import Sample


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def latency_ms(values_s: list[float], points: tuple[float, ...] = (50, 95, 99)) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for p in points:
        v = percentile(values_s, p)
        out[f"p{p:g}"] = None if v is None else round(v * 1000, 2)
    out["max"] = None if not values_s else round(max(values_s) * 1000, 2)
    return out


def api_summary(samples: list[Sample]) -> dict[str, Any]:
    """Throughput, latency and errors of the API calls alone."""
    ok: list[Sample] = []
    bad: list[Sample] = []
    for s in samples:  # one pass: membership tests on a list of 90,000 samples took the soak's report 1 h
        (ok if s.status in (200, 201) and s.message_id else bad).append(s)
    errors = Counter(str(s.status) for s in bad)
    first_errors = sorted({(s.status, (s.error or "")[:200]) for s in bad})[:5]
    span = (max(s.ended for s in samples) - min(s.started for s in samples)) if samples else 0.0
    ids = [s.message_id for s in ok]
    return {
        "requests": len(samples),
        "accepted": len(ok),
        "errors": dict(errors),
        "error_examples": [f"HTTP {st}: {text}" for st, text in first_errors],
        "duplicate_ids": len(ids) - len(set(ids)),
        "duration_s": round(span, 3),
        "per_s": round(len(ok) / span, 1) if span > 0 else None,
        "latency_ms": latency_ms([s.ended - s.started for s in ok]),
    }


def delivery_summary(samples: list[Sample], dump: dict[str, Any]) -> dict[str, Any]:
    """Delivered webhooks matched to the accepted sends: rate, end-to-end latency, loss and duplicates."""
    ok = {s.message_id: s for s in samples if s.status in (200, 201) and s.message_id}
    delivered: dict[str, float] = dump.get("arrivals", {}).get("delivered", {})
    matched = {mid: t for mid, t in delivered.items() if mid in ok}
    e2e = [t - ok[mid].started for mid, t in matched.items()]
    start = min((s.started for s in ok.values()), default=0.0)
    span = (max(matched.values()) - start) if matched else 0.0
    failed = dump.get("arrivals", {}).get("failed", {})
    return {
        "delivered": len(matched),
        "missing": len(ok) - len(matched),
        "failed_statuses": len([m for m in failed if m in ok]),
        "unknown_ids": len(delivered) - len(matched),
        "duplicate_statuses": dump.get("duplicate_statuses", 0),
        "duplicate_events": dump.get("duplicate_events", 0),
        "other_events": dump.get("other_events", 0),
        "webhook_events": dump.get("events", 0),
        "statuses": {k: len(v) for k, v in dump.get("arrivals", {}).items()},
        "duration_s": round(span, 3),
        "per_s": round(len(matched) / span, 1) if span > 0 else None,
        "e2e_latency_ms": latency_ms(e2e, (50, 95, 99)),
    }


def cpu_per_1k(cpu: dict[str, float], messages: int) -> dict[str, float]:
    """CPU seconds per 1,000 messages, per process, plus the total."""
    if messages <= 0:
        return {}
    out = {name: round(sec * 1000 / messages, 3) for name, sec in cpu.items()}
    out["total"] = round(sum(cpu.values()) * 1000 / messages, 3)
    return out


def growth(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean RSS over the first 10% of samples vs the last 10%, per process (MiB and percent)."""
    if len(samples) < 2:
        return {}
    n = max(1, len(samples) // 10)
    head, tail = samples[:n], samples[-n:]
    out = {}
    for name in samples[0]:
        if name == "t":
            continue
        a = sum(s.get(name, 0.0) for s in head) / n
        b = sum(s.get(name, 0.0) for s in tail) / n
        out[name] = {
            "first_mib": round(a, 1),
            "last_mib": round(b, 1),
            "growth_pct": round((b - a) / a * 100, 1) if a > 0 else 0.0,
        }
    return out


NOT_PRODUCT = frozenset({"chatd", "receiver", "bench client"})
"""Processes a real deployment would not run on its box: the simulated network and the load's two ends."""


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The figures two commits are compared by (issue 13): the product's CPU per 1,000 delivered messages
    (webapp + coreapp, or the embedded process, + database server + broker), the rates and the floor ratio."""
    ours = result.get("ours") or result.get("soak") or {}
    api, delivery = ours.get("api", {}), ours.get("delivery", {})
    cpu = result.get("cpu_s_per_1k", {})
    product = sum(v for k, v in cpu.items() if k != "total" and k not in NOT_PRODUCT)
    floor = result.get("floor", {}).get("api", {}).get("per_s")
    accepted = api.get("per_s")
    dup = api.get("duplicate_ids", 0) + delivery.get("duplicate_statuses", 0) + delivery.get("duplicate_events", 0)
    return {
        "product_cpu_s_per_1k": round(product, 3) if cpu else None,
        "chatd_cpu_s_per_1k": cpu.get("chatd"),
        "accepted_per_s": accepted,
        "delivered_per_s": delivery.get("per_s"),
        "floor_per_s": floor,
        "floor_ratio": round(accepted / floor, 3) if accepted and floor else None,
        "errors": api.get("errors", 0),
        "lost": delivery.get("missing", 0),
        "dup": dup,
    }


def summary_line(figures: dict[str, Any]) -> str:
    """``bench: product_cpu_s_per_1k=1.42 accepted_per_s=… … dup=0``: one line, ``key=value``, for scripts."""
    return "bench: " + " ".join(f"{k}={'-' if v is None else v}" for k, v in figures.items())
