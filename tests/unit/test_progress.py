"""``shared.progress``: one line rewritten in place on a terminal (a real pty here), nothing anywhere else."""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select

from shared.progress import Progress, count


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_count_groups_thousands() -> None:
    assert count(4200) == "4,200"
    assert count(10_000) == "10,000"
    assert count(7) == "7"


def test_not_a_terminal_writes_nothing() -> None:
    stream = io.StringIO()
    progress = Progress("bench", stream)
    assert not progress.enabled
    progress.update("sent 1/2", force=True)
    progress.clear()
    progress.done("sent 2/2")
    assert stream.getvalue() == ""


def test_terminal_rewrites_one_line_throttled_and_padded() -> None:
    stream, clock = FakeTty(), FakeClock()
    progress = Progress("bench", stream, min_interval_s=1.0, clock=clock)
    assert progress.enabled
    clock.now = 101.0
    progress.update(f"sent {count(4200)}/{count(10000)}  delivered {count(4100)}")
    assert stream.getvalue() == "\rbench: sent 4,200/10,000  delivered 4,100  1 s"
    clock.now = 101.5
    progress.update("throttled")  # within min_interval_s: not shown
    assert "throttled" not in stream.getvalue()
    clock.now = 137.2
    progress.update("short")
    last = stream.getvalue().split("\r")[-1]
    assert last.startswith("bench: short  37 s")
    assert len(last) == len("bench: sent 4,200/10,000  delivered 4,100  1 s")  # the longer line is blanked out
    progress.done("finished")
    assert stream.getvalue().endswith("bench: finished  37 s" + " " * (len(last) - len("bench: finished  37 s")) + "\n")
    assert stream.getvalue().count("\n") == 1


def _read_all(fd: int, timeout_s: float = 2.0) -> str:
    """Everything written to the pty: one ``read`` may return only the first write (seen in CI)."""
    chunks: list[bytes] = []
    while select.select([fd], [], [], timeout_s)[0]:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the terminal side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
        timeout_s = 0.2
    return b"".join(chunks).decode()


def test_real_pty_is_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        with os.fdopen(terminal, "w", closefd=True) as stream:
            progress = Progress("chaos", stream, clock=FakeClock())
            assert progress.enabled
            progress.update("sent 10/20", force=True)
            progress.done()
        output = _read_all(controller)
    finally:
        os.close(controller)
    assert output.startswith("\rchaos: sent 10/20  0 s")
    assert output.rstrip(" ").endswith(("\n", "\r\n"))


def test_a_pipe_is_not_a_terminal() -> None:
    reader, writer = os.pipe()
    try:
        with os.fdopen(writer, "w") as stream:
            progress = Progress("backup", stream)
            progress.update("waiting", force=True)
            progress.done("written")
        os.set_blocking(reader, False)
        try:
            data = os.read(reader, 1024)
        except BlockingIOError:
            data = b""
    finally:
        os.close(reader)
    assert data == b""


async def test_ticking_refreshes_then_ends_the_line() -> None:
    stream = FakeTty()
    progress = Progress("bench", stream)
    sent = 0
    async with progress.ticking(lambda: f"sent {sent}", period_s=0.01):
        for _ in range(5):
            sent += 1
            await asyncio.sleep(0.01)
    out = stream.getvalue()
    assert out.endswith("\n")
    assert "bench: sent 5" in out.split("\r")[-1]
    assert out.count("\n") == 1


async def test_ticking_on_a_non_terminal_starts_nothing() -> None:
    stream = io.StringIO()
    before = len(asyncio.all_tasks())
    async with Progress("bench", stream).ticking(lambda: "x", period_s=0.01):
        assert len(asyncio.all_tasks()) == before
    assert stream.getvalue() == ""
