"""Free loopback ports for the servers a local deployment starts (``openprem.multiconnect``), picked below the
kernel's ephemeral range.

``bind(("127.0.0.1", 0))`` hands out a port from the ephemeral range, the range every outgoing connection takes
its source port from: between the check and the server's own bind, any client connection (to the database, the
broker, a webapp) can take it, and the server fails with "address already in use".  Below that range a port is
only ever taken by an explicit bind, and this process never hands one out twice.  (The same rule as the tests'
helper, ``tests/support/ports.py``; the product does not import the tests.)
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20_000
_given: set[int] = set()


def ephemeral_low(range_file: Path = RANGE_FILE) -> int:
    """The first port of the kernel's ephemeral range (Linux's default 32768 when it cannot be read)."""
    try:
        return int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def bindable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing holds ``port`` on ``host`` right now."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(lowest: int = LOWEST) -> int:
    """A loopback port nothing listens on now and that no outgoing connection will take meanwhile."""
    high = ephemeral_low() - 1
    if high > lowest:
        for _ in range(500):
            port = random.randint(lowest, high)
            if port not in _given and bindable(port):
                _given.add(port)
                return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _given.add(port)
    return port


def port_or_free(preferred: int | None, lowest: int = LOWEST) -> int:
    """``preferred`` when it is free and not handed out yet, else a free port."""
    if preferred is not None and preferred not in _given and bindable(preferred):
        _given.add(preferred)
        return preferred
    return free_port(lowest)
