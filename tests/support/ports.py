"""Free TCP ports for the servers tests start, picked outside the kernel's ephemeral range.

``bind(("127.0.0.1", 0))`` hands out a port from the ephemeral range, the same range every outgoing connection
takes its source port from: between our check and the server's own bind, a client connection of any test (or a
database or broker connection) can take it, and the server fails with "address already in use" (seen in CI).
Below that range a port is only ever taken by an explicit bind, and this process never hands one out twice.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20_000
_given: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on now and that no outgoing connection will take meanwhile."""
    high = _ephemeral_low() - 1
    if high > _LOWEST:
        for _ in range(500):
            port = random.randint(_LOWEST, high)
            if port not in _given and _bindable(port):
                _given.add(port)
                return port
    with socket.socket() as sock:  # no room below the ephemeral range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
