"""Where requests whose target a client names may go: media links and webhook URLs (no server-side request forgery).

Only ``http``/``https`` to *public* addresses, unless the deployment admits more (``FetchSettings``:
``WA_FETCH_ALLOW`` CIDRs and host names, ``WA_FETCH_ALLOW_LOOPBACK`` in the embedded default).  Not public: the
IANA special-purpose ranges (loopback, private, shared/CGNAT, link-local with the cloud metadata address
169.254.169.254, multicast, unspecified, documentation, benchmarking, reserved, unique-local ``fc00::/7``,
site-local ``fec0::/10``, everything outside ``2000::/3``), and IPv6 forms that carry such an IPv4 address
(``::ffff:127.0.0.1``, ``::127.0.0.1``, NAT64 ``64:ff9b::a00:1``, 6to4 ``2002:a00:1::``).  The tables are ours,
not ``ipaddress.is_global``, whose answers changed between Python patch releases.

The check is made on the addresses the connection will use: ``AddressPolicy.connector()`` is an aiohttp connector
whose resolver (the loop's ``getaddrinfo``) returns only addresses it checked, so no second lookup exists for a
DNS-rebinding name to flip; IP literals never reach a resolver, so ``check_url`` checks them (and the scheme)
before every request and every redirect hop.  A refusal is ``TargetRefused`` (an ``OSError``, which aiohttp wraps
in ``ClientConnectorError``; ``refusal_in`` finds it again).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from shared.config import FetchSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# (network, why it is not public), most specific first where they overlap.
_V4_SPECIAL: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "private (shared address space)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved (IETF protocol assignments)"),
    (_V4("192.0.2.0/24"), "reserved (documentation)"),
    (_V4("192.88.99.0/24"), "reserved (6to4 relay)"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "reserved (benchmarking)"),
    (_V4("198.51.100.0/24"), "reserved (documentation)"),
    (_V4("203.0.113.0/24"), "reserved (documentation)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)
_V4_MAPPED = _V6("::ffff:0:0/96")
_V4_COMPATIBLE = _V6("::/96")
_NAT64 = _V6("64:ff9b::/96")
_6TO4 = _V6("2002::/16")
_V6_SPECIAL: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private (local-use NAT64)"),
    (_V6("100::/64"), "reserved (discard-only)"),
    (_V6("2001::/23"), "reserved (IETF protocol assignments, Teredo)"),
    (_V6("2001:db8::/32"), "reserved (documentation)"),
    (_V6("3fff::/20"), "reserved (documentation)"),
    (_V6("5f00::/16"), "reserved (segment routing)"),
    (_V6("fc00::/7"), "unique-local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
)
_GLOBAL_UNICAST = _V6("2000::/3")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, NAT64, 6to4) and the form's name."""
    if ip in _V4_MAPPED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-compatible"
    if ip in _6TO4:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF), "6to4"
    return None


def non_public(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (for logs), or ``None`` when it is one."""
    if isinstance(ip, ipaddress.IPv4Address):
        return next((why for net, why in _V4_SPECIAL if ip in net), None)
    if ip.scope_id:
        ip = ipaddress.IPv6Address(int(ip))
    inner = embedded_ipv4(ip)
    if inner is not None:
        v4, form = inner
        why = non_public(v4)
        if form == "IPv4-compatible":  # deprecated (RFC 4291): never a public route, whatever it carries
            return f"{why or 'reserved'} ({form})"
        return f"{why} ({form})" if why else None
    found = next((why for net, why in _V6_SPECIAL if ip in net), None)
    if found is None and ip not in _GLOBAL_UNICAST:
        return "reserved"
    return found


def _is_loopback(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and inner[1] == "IPv4-mapped":
            return inner[0].is_loopback
    return ip.is_loopback


class TargetRefused(OSError):
    """A request target the policy does not allow; ``str()`` names the host and why (no path, no query)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason if reason.startswith(host) else f"{host}: {reason}")
        self.host, self.reason = host, reason


def refusal_in(exc: BaseException) -> TargetRefused | None:
    """The ``TargetRefused`` behind an aiohttp error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TargetRefused):
            return seen
        if isinstance(seen, aiohttp.ClientConnectorError) and isinstance(seen.os_error, TargetRefused):
            return seen.os_error
        seen = seen.__cause__
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _localhost(host: str) -> bool:
    """RFC 6761: ``localhost`` and its subdomains are loopback whatever a resolver says."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Public addresses, plus what the deployment allow-lists.  ``AddressPolicy()`` admits public ones only."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    allow_loopback: bool = False

    @classmethod
    def from_settings(cls, settings: FetchSettings) -> AddressPolicy:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in settings.allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(tuple(networks), frozenset(hosts), settings.allow_loopback)

    def host_listed(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        if name in self.hosts:
            return True
        return any(h.startswith("*.") and name.endswith(h[1:]) for h in self.hosts)

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why a connection to ``ip`` (found for ``host``) is not allowed, or ``None``."""
        if self.host_listed(host):
            return None
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            inner = embedded_ipv4(ip)
            if inner is not None:
                candidates.append(inner[0])
        if any(c in net for c in candidates for net in self.networks if c.version == net.version):
            return None
        if self.allow_loopback and _is_loopback(ip):
            return None
        why = non_public(ip)
        return f"{ip} is {why}" if why else None

    def check_url(self, url: URL | str) -> URL:
        """``url`` if its scheme is http(s) and its host is not refused without a lookup (an IP literal, or
        ``localhost``); names are checked by the connector's resolver.  Raises ``TargetRefused``."""
        try:
            parsed = url if isinstance(url, URL) else URL(url)
            host = parsed.host
        except ValueError:
            raise TargetRefused("?", "not a valid URL") from None
        if parsed.scheme not in ("http", "https") or not host:
            raise TargetRefused(host or "?", "not an absolute http(s) URL")
        ip = _literal(host)
        if ip is None and _localhost(host) and not self.host_listed(host):
            ip = ipaddress.IPv4Address("127.0.0.1")
        why = self.refusal(host, ip) if ip is not None else None
        if why is not None:
            raise TargetRefused(host, why)
        return parsed

    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        """A connector that connects only to addresses this policy allows (checked at resolution)."""
        return aiohttp.TCPConnector(resolver=GuardedResolver(self), **kwargs)


class GuardedResolver(AbstractResolver):
    """The loop's ``getaddrinfo``, refusing the whole name when any address it gives is not allowed (a name with
    one private address among public ones is not trusted with the others either)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        results: list[ResolveResult] = []
        for fam, _type, proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            why = self._policy.refusal(host, ipaddress.ip_address(address.partition("%")[0]))
            if why is not None:
                raise TargetRefused(host, why)
            flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
            results.append(
                ResolveResult(hostname=host, host=address, port=int(sockaddr[1]), family=fam, proto=proto, flags=flags)
            )
        if not results:
            raise OSError(f"{host}: no address")
        return results

    async def close(self) -> None:
        return None


def under_prefix(url: URL | str, prefix: str) -> bool:
    """Whether ``url`` is at or below ``prefix`` (same scheme, host and port; the prefix's path at a ``/``
    boundary).  Paths with encoded dots, slashes or backslashes are never under a prefix: a server may decode
    them into a path the prefix does not cover."""
    target = url if isinstance(url, URL) else URL(url)
    base = URL(prefix)
    raw = target.raw_path.lower()
    if "%2e" in raw or "%2f" in raw or "%5c" in raw or "\\" in raw:
        return False
    if (target.scheme, (target.host or "").lower(), target.port) != (base.scheme, (base.host or "").lower(), base.port):
        return False
    path, root = target.path, base.path or "/"
    return path == root or path.startswith(root if root.endswith("/") else root + "/")
