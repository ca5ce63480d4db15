"""Log rotation per process (sizes scaled down through ``setup_logging(rotation=...)``) and the cleanup command."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import LogSettings
from shared.logcleanup import cleanup, rotated_files
from shared.logging import MB, ROTATION, Rotation, setup_logging, stop_logging

ROOT = Path(__file__).resolve().parents[2]
MAX_BYTES = 4_000


def test_production_policies() -> None:
    assert ROTATION["webapp"] == Rotation(max_bytes=20 * MB, backup_count=30, compress=False)
    assert ROTATION["coreapp"] == Rotation(max_bytes=15 * MB, backup_count=30, compress=True)


@pytest.mark.parametrize("process", ["webapp", "coreapp"])
def test_rotation_caps_sizes_and_counts(tmp_path: Path, process: str) -> None:
    policy = ROTATION[process]
    scaled = Rotation(max_bytes=MAX_BYTES, backup_count=policy.backup_count, compress=policy.compress)
    setup_logging(LogSettings(to_file=True), tmp_path, process, rotation=scaled, console=False)
    log = logging.getLogger(f"openprem.{process}.test")
    try:
        # ~200 bytes a line: enough for ~45 rotations, more than the 30 kept.
        for i in range(900):
            log.info("line %05d %s", i, "x" * 120)
    finally:
        stop_logging()

    live = tmp_path / f"{process}.log"
    rotated = rotated_files(tmp_path, process)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, *(p.name for p in rotated)])
    assert len(rotated) == 30
    suffix = ".gz" if policy.compress else ""
    assert {p.name for p in rotated} == {f"{process}.log.{i}{suffix}" for i in range(1, 31)}
    assert live.stat().st_size <= MAX_BYTES
    last_seen = []
    for path in rotated:
        if policy.compress:
            with gzip.open(path, "rb") as fh:  # a valid gzip stream
                content = fh.read()
            assert path.stat().st_size < len(content)  # actually compressed
        else:
            content = path.read_bytes()
        assert 0 < len(content) <= MAX_BYTES
        lines = content.decode().splitlines()
        assert all(json.loads(line)["event"].startswith("line ") for line in lines)
        last_seen.append(lines[-1])
    # .1 is the newest: line numbers go down as the index goes up.
    numbers = [int(json.loads(line)["event"].split()[1]) for line in last_seen]
    assert numbers == sorted(numbers, reverse=True)


def _forty_files(log_dir: Path, process: str, suffix: str) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{process}.log").write_text("live\n")
    now = 1_700_000_000
    for i in range(1, 41):
        path = log_dir / f"{process}.log.{i}{suffix}"
        path.write_bytes(b"old\n")
        os.utime(path, (now - i * 60, now - i * 60))  # .1 newest


def test_cleanup_keeps_the_newest_30(tmp_path: Path) -> None:
    _forty_files(tmp_path, "coreapp", ".gz")
    (tmp_path / "webapp.log.1").write_text("another process's file\n")
    result = cleanup(tmp_path, "coreapp")
    assert len(result.deleted) == 10 and len(result.kept) == 30
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"coreapp.log", "webapp.log.1", *(f"coreapp.log.{i}.gz" for i in range(1, 31))}
    assert cleanup(tmp_path, "coreapp").deleted == []


def _env(log_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
    env.update({"WA_LOG_DIR": str(log_dir), "WA_CONFIG_FILE": str(log_dir / "absent.conf"), "PYTHONPATH": str(ROOT)})
    return env


@pytest.mark.parametrize(("process", "suffix"), [("coreapp", ".gz"), ("webapp", "")])
def test_cleanup_command_and_script(tmp_path: Path, process: str, suffix: str) -> None:
    log_dir = tmp_path / "log"
    _forty_files(log_dir, process, suffix)
    done = subprocess.run(
        [sys.executable, "-m", process, "cleanup"], env=_env(log_dir), cwd=tmp_path, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert b"deleted 10" in done.stdout
    assert len(rotated_files(log_dir, process)) == 30
    assert not (log_dir / f"{process}.log.31{suffix}").exists() and (log_dir / f"{process}.log").exists()

    _forty_files(log_dir, process, suffix)  # docker/cleanup.sh runs the same command
    env = {**_env(log_dir), "PYTHON": sys.executable}
    script = ROOT / "docker" / "cleanup.sh"
    done = subprocess.run(["sh", str(script), process], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(rotated_files(log_dir, process)) == 30
    bad = subprocess.run(["sh", str(script), "chatd"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    assert bad.returncode == 2
