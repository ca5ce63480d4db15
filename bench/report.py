"""The report: printed, and written as JSON and Markdown to bench/results/<timestamp>-<backend>.{json,md}."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Row = tuple[str, ...]


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _lat(lat: dict[str, Any] | None, keys: tuple[str, ...] = ("p50", "p95", "p99")) -> str:
    if not lat:
        return "-"
    return " / ".join(_f(lat.get(k)) for k in keys)


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# OpenPrem bench: {result['backend']} ({result['started_at']})",
        "",
        f"Code: {result.get('source', '?')}.  "
        f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['mem_gib']} GiB, "
        f"Python {result['machine']['python']}, kernel {result['machine']['kernel']}.  "
        "Config: "
        + (f"{cfg['messages']:,} messages, " if not cfg.get("duration_s") else "")
        + f"concurrency {cfg['concurrency']}, {cfg['phones']:,} phones, "
        f"warm-up {'on' if cfg['warmup'] else 'off'}, log level {cfg['log_level']}"
        + (f", soak {cfg['duration_s']} s at {cfg['rate']}/s" if cfg.get("duration_s") else "")
        + (", **profiled (py-spy: numbers lower than unprofiled)**" if cfg.get("profile") else "")
        + ".",
        "",
        f"**Verdict: {result['verdict']}**",
        "",
    ]
    rows: list[Row] = [
        ("phase", "API msg/s", "API p50 / p95 / p99 ms", "delivered/s", "e2e p50 / p95 / p99 ms", "errors / lost / dup")
    ]
    for label, key in (("warm-up (1st msg per phone)", "warmup"), ("measured", "ours"), ("soak", "soak")):
        phase = result.get(key)
        if not phase:
            continue
        api, dlv = phase["api"], phase.get("delivery", {})
        errs = sum(api["errors"].values())
        dups = api["duplicate_ids"] + dlv.get("duplicate_statuses", 0) + dlv.get("duplicate_events", 0)
        rows.append(
            (
                label,
                _f(api["per_s"]),
                _lat(api["latency_ms"]),
                _f(dlv.get("per_s")),
                _lat(dlv.get("e2e_latency_ms")),
                f"{errs} / {dlv.get('missing', 0)} / {dups}",
            )
        )
    floor = result.get("floor")
    if floor:
        api = floor["api"]
        rows.append(
            (
                "floor (aiohttp + 1 MariaDB commit)",
                _f(api["per_s"]),
                _lat(api["latency_ms"]),
                "-",
                "-",
                f"{sum(api['errors'].values())} / - / {api['duplicate_ids']}",
            )
        )
    lines += _table(rows)
    if result.get("fraction_of_floor") is not None:
        lines += ["", f"Accepted throughput is **{result['fraction_of_floor'] * 100:.1f}%** of the floor's."]

    pipe = result.get("pipeline") or {}
    end = pipe.get("at_send_end")
    if end:
        counts = ", ".join(f"{k} {v:,}" for k, v in end.items() if k not in ("t", "tag", "outbox"))
        lines += [
            "",
            f"When the last API call returned ({end['t']} s in), outbound messages by status: {counts}; "
            f"webhook outbox {end['outbox']:,} rows (peak {pipe.get('max_outbox') or 0:,}).",
        ]
    elif pipe.get("error"):
        lines += ["", f"Pipeline sampler off: {pipe['error']}"]

    cpu, peak = result.get("cpu_s_per_1k", {}), result.get("peak_rss_mib", {})
    if cpu:
        lines += ["", "CPU seconds per 1,000 messages (measured phase incl. drain) and peak RSS (VmHWM):", ""]
        shared = set(result.get("shared_processes", []))
        rows = [("process", "CPU s / 1k msgs", "peak RSS MiB")]
        for name in cpu:
            mark = " *" if name in shared else ""
            rows.append((name + mark, _f(cpu[name], 3), _f(peak.get(name))))
        lines += _table(rows)
        if shared:
            lines += ["", "\\* a shared system server: anything else using it at the time counts too."]
    fcpu = result.get("floor_cpu_s_per_1k")
    if fcpu:
        lines += ["", "Floor CPU seconds per 1,000 requests: " + ", ".join(f"{k} {_f(v, 3)}" for k, v in fcpu.items())]

    stmts = result.get("db_statements_per_msg")
    if stmts:
        floor_stmts = (result.get("floor") or {}).get("db_statements_per_msg") or {}
        lines += ["", "MariaDB statements per message (server-wide counters, so an upper bound):", ""]
        rows = [("counter", "ours", "floor")]
        for name, value in stmts.items():
            rows.append((name, _f(value, 2), _f(floor_stmts.get(name), 2)))
        lines += _table(rows)

    soak = result.get("soak")
    if soak and soak.get("rss_growth"):
        lines += ["", f"Soak RSS, mean of the first 10% vs the last 10% of {soak['rss_samples']} samples:", ""]
        rows = [("process", "first MiB", "last MiB", "growth %")]
        for name, g in soak["rss_growth"].items():
            rows.append((name, _f(g["first_mib"]), _f(g["last_mib"]), _f(g["growth_pct"])))
        lines += _table(rows)
        lines += [
            "",
            f"Max send lag behind schedule: {soak['max_lag_s']:.2f} s; webhook backlog when sending "
            f"stopped: {soak['backlog_at_end']:,}.",
        ]

    for name, prof in (result.get("profile") or {}).items():
        lines += ["", f"### Profile: {name} ({prof['samples']:,} busy samples)", ""]
        cats = [tuple(map(str, r)) for r in prof["categories_pct"]]
        lines += _table([("where (innermost category)", "% busy"), *cats])
        lines += ["", "Our functions, inclusive:", ""]
        funcs = [tuple(map(str, r)) for r in prof["top_our_functions_inclusive_pct"][:10]]
        lines += _table([("function", "%"), *funcs])
    if result.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return out


def write(result: dict[str, Any], results_dir: Path, stem: str) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{stem}.json"
    md_path = results_dir / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(result))
    return json_path, md_path
