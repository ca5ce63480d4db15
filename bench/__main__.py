"""``python -m bench`` (``make bench``): OpenPrem's send throughput, latency, CPU and memory, beside a floor.

Default: the split deployment on MariaDB + a private Mosquitto, 1,000 phones, a warm-up message to each (opens
the Signal sessions), then 5,000 messages from 64 concurrent clients, waiting for every ``delivered`` webhook;
then the floor (aiohttp + one MariaDB commit) with the same client.  ``--duration S --rate R`` runs a steady-rate
soak instead and reports RSS growth.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import load, report
from bench.dbstats import mariadb_counters, per_message
from bench.deploy import BACKENDS, BenchDeployment, BenchError, phone_ids
from bench.floorrun import run_floor
from bench.live import live_progress
from bench.pipeline import PipelineSampler
from bench.profile import Profiler
from bench.stats import api_summary, cpu_per_1k, delivery_summary, growth, summary, summary_line
from shared.tasks import TaskSupervisor

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=BACKENDS, default="mariadb")
    p.add_argument(
        "--shards",
        type=int,
        default=0,
        choices=(0, 1, 2, 4, 8),
        help="multiconnect: one master and this many coreapps, each owning a shard (default 0: one coreapp)",
    )
    p.add_argument("--messages", type=int, default=5000, help="messages in the measured phase (default 5000)")
    p.add_argument("--concurrency", type=int, default=64, help="concurrent API clients (default 64)")
    p.add_argument("--phones", type=int, default=1000, help="simulated phones, sent to round-robin (default 1000)")
    p.add_argument(
        "--no-warmup",
        dest="warmup",
        action="store_false",
        help="skip the first message to every phone (then the measured phase opens the sessions)",
    )
    p.add_argument("--no-floor", dest="floor", action="store_false", help="skip the floor measurement")
    p.add_argument("--duration", type=float, default=None, help="soak: send for this many seconds (needs --rate)")
    p.add_argument("--rate", type=float, default=None, help="soak: messages per second")
    p.add_argument("--sample-every", type=float, default=5.0, help="soak: RSS sample interval, s (default 5)")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        help="max seconds to wait for delivered webhooks after the last send (default 180)",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=30.0,
        help="give up waiting when no webhook arrived for this long (default 30)",
    )
    p.add_argument("--profile", action="store_true", help="py-spy record webapp and coreapp in the measured phase")
    p.add_argument("--log-level", default="INFO", help="WA_LOG_LEVEL of the apps (default INFO, as deployed)")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument(
        "--commit",
        default=None,
        help="benchmark this git revision (exported with git archive, with this bench/) "
        "instead of the working tree, which may be mid-edit",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep logs and state even when all went well")
    args = p.parse_args(argv)
    if (args.duration is None) != (args.rate is None):
        p.error("--duration and --rate go together")
    if args.messages < 1 or args.concurrency < 1 or args.phones < 1:
        p.error("--messages, --concurrency and --phones must be positive")
    return args


def machine() -> dict[str, Any]:
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


async def drain(dep: BenchDeployment, expected: int, timeout_s: float, stall_s: float) -> int:
    """Wait until ``expected`` delivered statuses have arrived (or timeout / no progress); how many did."""
    deadline = time.monotonic() + timeout_s
    last_count, last_change = -1, time.monotonic()
    async with aiohttp.ClientSession() as session:
        while True:
            count = int((await dep.progress(session))["statuses"].get("delivered", 0))
            now = time.monotonic()
            if count >= expected or now > deadline or now - last_change > stall_s:
                return count
            if count != last_count:
                last_count, last_change = count, now
            await asyncio.sleep(0.2)


async def phase(dep: BenchDeployment, samples: list[load.Sample], args: argparse.Namespace) -> dict[str, Any]:
    api = api_summary(samples)
    await drain(dep, api["accepted"], args.drain_timeout, args.stall_timeout)
    async with aiohttp.ClientSession() as session:
        dump = await dep.dump(session)
    return {"api": api, "delivery": delivery_summary(samples, dump)}


async def sample_rss(dep: BenchDeployment, every: float, out: list[dict[str, float]], stop: asyncio.Event) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        out.append({"t": round(time.monotonic() - t0, 1), **{k: round(v, 1) for k, v in dep.watch.rss_mib().items()}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def measure(args: argparse.Namespace, workdir: Path, result: dict[str, Any]) -> None:
    """Everything on the deployment: setup, warm-up, the measured phase or the soak."""
    dep = BenchDeployment(args.backend, workdir, args.log_level, shards=args.shards)
    phones = phone_ids(args.phones)
    tasks = TaskSupervisor("bench")  # the samplers: a crash is logged, and an early exit cancels them
    try:
        print(f"bench: starting the {args.backend} deployment in {workdir}", flush=True)
        await dep.start()
        result["setup_s"] = {k: round(v, 2) for k, v in (await dep.prepare(phones)).items()}
        print(f"bench: registered, {len(phones)} phones ready {result['setup_s']}", flush=True)
        index = 0
        if args.warmup:
            async with live_progress(dep, tasks, len(phones), "bench warm-up") as live:
                samples = await load.closed(
                    dep.web_url, dep.token, phones, len(phones), args.concurrency, on_sample=live.on_sample
                )
                index = len(samples)
                result["warmup"] = await phase(dep, samples, args)
            print(f"bench: warm-up {_brief(result['warmup'])}", flush=True)
            async with aiohttp.ClientSession() as session:
                await dep.reset_receiver(session)
        profiler = Profiler(workdir / "profile") if args.profile else None
        sampler = PipelineSampler(dep.db) if dep.db is not None else None
        stop_sampler = asyncio.Event()
        sampling = tasks.spawn("pipeline-sampler", sampler.run(stop_sampler)) if sampler else None
        counters = await mariadb_counters() if args.backend == "mariadb" else {}
        before = dep.watch.cpu()
        if profiler is not None:
            profiler.start({n: p for n, p in dep.app_pids().items() if n != "chatd"})
        if args.duration is not None:
            rss: list[dict[str, float]] = []
            stop = asyncio.Event()
            rss_task = tasks.spawn("rss-sampler", sample_rss(dep, args.sample_every, rss, stop))
            print(f"bench: soak, {args.rate}/s for {args.duration:.0f} s", flush=True)
            async with live_progress(dep, tasks, int(args.rate * args.duration)) as live:
                paced = await load.paced(
                    dep.web_url,
                    dep.token,
                    phones,
                    args.rate,
                    args.duration,
                    args.concurrency,
                    first_index=index,
                    on_sample=live.on_sample,
                )
                if sampler is not None:
                    sampler.poke("send_end")
                async with aiohttp.ClientSession() as session:
                    delivered_now = int((await dep.progress(session))["statuses"].get("delivered", 0))
                soak = await phase(dep, paced.samples, args)
            stop.set()
            await rss_task
            soak.update(
                rss_samples=len(rss),
                rss=rss,
                rss_growth=growth(rss),
                max_lag_s=round(paced.max_lag_s, 3),
                backlog_at_end=soak["api"]["accepted"] - delivered_now,
            )
            result["soak"] = soak
            messages = len(paced.samples)
        else:
            print(f"bench: sending {args.messages} messages, concurrency {args.concurrency}", flush=True)
            async with live_progress(dep, tasks, args.messages) as live:
                samples = await load.closed(
                    dep.web_url,
                    dep.token,
                    phones,
                    args.messages,
                    args.concurrency,
                    first_index=index,
                    on_sample=live.on_sample,
                )
                if sampler is not None:
                    sampler.poke("send_end")
                result["ours"] = await phase(dep, samples, args)
            messages = len(samples)
        cpu = dep.watch.cpu_delta(before, dep.watch.cpu())
        if counters:
            result["db_statements_per_msg"] = per_message(counters, await mariadb_counters(), messages)
        if sampler is not None and sampling is not None:
            stop_sampler.set()
            await sampling
            result["pipeline"] = sampler.summary()
        if profiler is not None:
            result["profile"] = profiler.stop()
        result["cpu_s_per_1k"] = cpu_per_1k(cpu, messages)
        result["peak_rss_mib"] = {k: round(v, 1) for k, v in dep.watch.peak_mib().items()}
        result["shared_processes"] = sorted(dep.watch.shared)
        result["died"] = dep.alive()
    finally:
        await tasks.close()
        await dep.stop()


def _brief(phase: dict[str, Any]) -> str:
    api, dlv = phase["api"], phase.get("delivery", {})
    return (
        f"{api['accepted']}/{api['requests']} accepted at {api['per_s']}/s "
        f"(p50 {api['latency_ms']['p50']} ms, p99 {api['latency_ms']['p99']} ms); "
        f"{dlv.get('delivered')} delivered at {dlv.get('per_s')}/s, {dlv.get('missing')} missing"
    )


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    problems = []
    for key in ("warmup", "ours", "soak"):
        ph = result.get(key)
        if not ph:
            continue
        api, dlv = ph["api"], ph["delivery"]
        if api["errors"]:
            problems.append(f"{key}: API errors {api['errors']} e.g. {api['error_examples'][:1]}")
        if dlv["missing"]:
            problems.append(f"{key}: {dlv['missing']} messages without a delivered webhook")
        if dlv["failed_statuses"]:
            problems.append(f"{key}: {dlv['failed_statuses']} failed statuses")
        dups = api["duplicate_ids"] + dlv["duplicate_statuses"] + dlv["duplicate_events"]
        if dups:
            problems.append(f"{key}: {dups} duplicates")
    if result.get("died"):
        problems.append(f"processes died: {result['died']}")
    floor = result.get("floor")
    if floor and floor["api"]["errors"]:
        problems.append(f"floor: errors {floor['api']['errors']}")
    if problems:
        return False, "FAIL: " + "; ".join(problems)
    return True, "OK: no API error, no lost message, no duplicate"


async def main_async(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix=f"openprem-bench-{stamp}-"))
    result: dict[str, Any] = {
        "backend": args.backend,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "source": source_description(),
        "machine": machine(),
        "config": {
            "messages": args.messages,
            "concurrency": args.concurrency,
            "phones": args.phones,
            "warmup": args.warmup,
            "log_level": args.log_level,
            "duration_s": args.duration,
            "rate": args.rate,
            "profile": args.profile,
            "workdir": str(workdir),
        },
        "notes": [],
    }
    try:
        await measure(args, workdir, result)
    except BenchError as exc:
        print(f"bench: {exc}\nbench: logs are in {workdir}", file=sys.stderr)
        return 2
    if args.floor and args.duration is None:
        print("bench: the floor (aiohttp + one MariaDB commit per request)", flush=True)
        floor = await run_floor(workdir / "floor", args.messages, args.concurrency, phone_ids(args.phones))
        result["floor"] = floor
        result["floor_cpu_s_per_1k"] = floor["cpu_s_per_1k"]
        ours, base = result["ours"]["api"]["per_s"], floor["api"]["per_s"]
        result["fraction_of_floor"] = round(ours / base, 4) if ours and base else None
    if "mariadbd" in result.get("cpu_s_per_1k", {}) or "postgres" in result.get("cpu_s_per_1k", {}):
        result["notes"].append("database CPU is the whole server's: other databases in use at the time count too")
    ok, text = verdict(result)
    result["verdict"] = text
    result["summary"] = summary(result)
    stem = f"{stamp}-{args.backend}" + ("-soak" if args.duration else "") + ("-profile" if args.profile else "")
    json_path, md_path = report.write(result, args.results_dir, stem)
    print(report.markdown(result))
    print(f"bench: wrote {json_path} and {md_path}")
    if not (ok and not args.keep_workdir):
        print(f"bench: logs and state kept in {workdir}")
    print(summary_line(result["summary"]), flush=True)  # last, so `make bench | tail -1` is the comparison
    if ok and not args.keep_workdir:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.environ.get("OPENPREM_BENCH_SRC"):  # the export made by --commit
            shutil.rmtree(os.environ["OPENPREM_BENCH_SRC"], ignore_errors=True)
    return 0 if ok else 1


def source_description() -> str:
    """What code runs: the working tree's commit and how many files differ from it, or the exported one."""
    exported = os.environ.get("OPENPREM_BENCH_COMMIT")
    if exported:
        return f"commit {exported} (git archive)"
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"working tree at {head}" + (f" + {len(dirty)} modified files" if dirty else "")


def run_commit(args: argparse.Namespace, argv: list[str]) -> None:
    """Export ``args.commit`` to a temporary directory, copy this bench/ into it and re-run from there."""
    repo = Path(__file__).resolve().parent.parent
    sha = subprocess.run(
        ["git", "rev-parse", "--short", args.commit], cwd=repo, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    src = Path(tempfile.mkdtemp(prefix=f"openprem-bench-src-{sha}-"))
    archive = subprocess.run(["git", "archive", sha], cwd=repo, capture_output=True, timeout=120, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, timeout=120, check=True)
    shutil.rmtree(src / "bench", ignore_errors=True)
    shutil.copytree(repo / "bench", src / "bench", ignore=shutil.ignore_patterns("results", "__pycache__"))
    rest = [a for i, a in enumerate(argv) if a != "--commit" and (i == 0 or argv[i - 1] != "--commit")]
    rest = [a for a in rest if not a.startswith("--commit=")]
    if args.results_dir == RESULTS:
        rest += ["--results-dir", str(RESULTS)]
    env = dict(os.environ, PYTHONPATH=str(src), OPENPREM_BENCH_COMMIT=sha, OPENPREM_BENCH_SRC=str(src))
    print(f"bench: running commit {sha} from {src}", flush=True)
    os.chdir(src)
    os.execve(sys.executable, [sys.executable, "-m", "bench", *rest], env)  # noqa: S606 - no shell wanted


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    if args.commit:
        run_commit(args, argv)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
