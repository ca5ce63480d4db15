"""Files and directories only the service's user may open: the database, media, keys, certificates and logs.

Modes are given at creation (``os.mkdir``/``os.open`` with 0700/0600), not left to a process umask, so they hold
in every process that creates them (the in-process tests and the embedded launcher included) whatever umask the
container or shell set.  What already exists keeps its mode — an operator may have chosen it for a mounted
volume — except files only we use, which ``tighten`` narrows (an SQLite database an older version made 0644).
Blocking calls: run them in a thread on the event loop.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_GROUP_OTHER = 0o077


def make_private_dirs(path: Path) -> None:
    """``mkdir -p path`` where every directory created here is 0700 (``Path.mkdir`` would leave parents 0755)."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(directory, PRIVATE_DIR_MODE)


def private_opener(path: str, flags: int) -> int:
    """``open(..., opener=private_opener)``: a file it creates is 0600."""
    return os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE_MODE)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists; whether it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def exposed(path: Path) -> bool:
    """Whether group or others have any permission on ``path`` (``False`` when it does not exist)."""
    try:
        return bool(stat.S_IMODE(os.stat(path).st_mode) & _GROUP_OTHER)
    except FileNotFoundError:
        return False


def tighten(path: Path) -> bool:
    """Take group and other permissions off a file we own and alone use; whether its mode changed."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return False
    mode = stat.S_IMODE(info.st_mode)
    if not mode & _GROUP_OTHER or info.st_uid != os.geteuid():
        return False
    os.chmod(path, mode & ~_GROUP_OTHER)
    return True
