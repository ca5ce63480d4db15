"""``python -m coreapp cleanup`` / ``python -m webapp cleanup``: delete all but the newest 30 rotated log files.

What ``/opt/whatsapp/bin/cleanup.sh`` runs in the images (the host's cron: ``docker exec <container>
/opt/whatsapp/bin/cleanup.sh``).  ``RotatingFileHandler`` already keeps at most 30 backups while it runs; this
also removes what it leaves behind: backups beyond 30 from an earlier configuration, copies renamed by hand.

Files considered: ``<log_dir>/<process>.log.<anything>`` (``coreapp.log.7.gz``, ``webapp.log.12``); the live
``<process>.log`` is never touched, nor any other process's files.  Newest first by modification time, then by
rotation number (``.1`` is newer than ``.2``).  The command never writes a log file itself, so it cannot race
the running process over ``<process>.log``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("openprem.logcleanup")

KEEP = 30


@dataclass(frozen=True)
class CleanupResult:
    kept: list[Path]
    deleted: list[Path]


def _index(path: Path, process: str) -> int:
    match = re.match(rf"^{re.escape(process)}\.log\.(\d+)(?:\.gz)?$", path.name)
    return int(match.group(1)) if match else 1 << 30


def rotated_files(log_dir: Path, process: str) -> list[Path]:
    """``process``'s rotated files in ``log_dir``, newest first."""
    prefix = f"{process}.log."
    if not log_dir.is_dir():
        return []
    files = [p for p in log_dir.iterdir() if p.name.startswith(prefix) and p.is_file()]
    return sorted(files, key=lambda p: (-p.stat().st_mtime_ns, _index(p, process), p.name))


def cleanup(log_dir: Path, process: str, keep: int = KEEP) -> CleanupResult:
    files = rotated_files(log_dir, process)
    kept, old = files[:keep], files[keep:]
    deleted = []
    for path in old:
        try:
            path.unlink()
        except FileNotFoundError:  # rotated away meanwhile
            continue
        except OSError as exc:
            log.warning("cleanup: cannot delete %s: %s", path, exc)
            continue
        deleted.append(path)
    return CleanupResult(kept, deleted)


def run_cleanup(log_dir: Path, process: str, keep: int = KEEP) -> int:
    """The command: clean up and say what was done on stdout; exit status 0 (1 if the directory is unusable)."""
    if log_dir.exists() and not log_dir.is_dir():
        print(f"cleanup: {log_dir} is not a directory")
        return 1
    result = cleanup(log_dir, process, keep)
    print(f"cleanup: {process} logs in {log_dir}: kept {len(result.kept)} rotated files, deleted {len(result.deleted)}")
    return 0
