"""Issue 12 point 2 (server-side request forgery): the address policy of ``shared.netguard`` on every address form,
the allow-list settings, the provider URL prefix, and the connector that connects only to checked addresses."""

from __future__ import annotations

import ipaddress
import socket

import aiohttp
import pytest

from openprem.embedded import embedded_settings
from shared.config import ConfigError, FetchSettings, load_settings
from shared.netguard import AddressPolicy, GuardedResolver, TargetRefused, non_public, refusal_in, under_prefix
from shared.profiles import MediaProvider
from tests.security.servers import Recorder

REFUSED = [
    # IPv4
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),  # shared address space (carrier-grade NAT)
    ("100.100.100.200", "private"),  # a cloud metadata address inside 100.64/10
    ("169.254.169.254", "link-local"),  # cloud metadata
    ("169.254.0.1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.0.192", "reserved"),  # a cloud metadata address inside 192.0.0/24
    ("192.0.2.10", "reserved"),
    ("198.18.0.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    # IPv6
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("fc00::1", "unique-local"),
    ("fd00:ec2::254", "unique-local"),  # cloud metadata over IPv6
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff05::2", "multicast"),
    ("2001:db8::1", "reserved"),
    ("2001::1", "reserved"),  # Teredo
    ("100::1", "reserved"),
    ("64:ff9b:1::1", "private"),
    ("::ffff:0:a00:1", "reserved"),  # IPv4-translated (SIIT)
    ("4000::1", "reserved"),  # outside 2000::/3
    # IPv6 forms of refused IPv4 addresses
    ("::ffff:127.0.0.1", "loopback (IPv4-mapped)"),
    ("::ffff:10.0.0.1", "private (IPv4-mapped)"),
    ("::ffff:169.254.169.254", "link-local (IPv4-mapped)"),
    ("::ffff:0.0.0.0", "unspecified (IPv4-mapped)"),
    ("::127.0.0.1", "loopback (IPv4-compatible)"),
    ("::10.0.0.1", "private (IPv4-compatible)"),
    ("::8.8.8.8", "reserved (IPv4-compatible)"),  # deprecated form: never public
    ("64:ff9b::7f00:1", "loopback (NAT64)"),
    ("64:ff9b::a00:1", "private (NAT64)"),
    ("64:ff9b::a9fe:a9fe", "link-local (NAT64)"),
    ("2002:7f00:1::1", "loopback (6to4)"),
    ("2002:a00:1::", "private (6to4)"),
    ("2002:c0a8:101::1", "private (6to4)"),
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below 100.64/10
    "172.32.0.1",  # just above 172.16/12
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_not_public(address: str, why: str) -> None:
    ip = ipaddress.ip_address(address)
    found = non_public(ip)
    assert found is not None and found.startswith(why), found
    refused = AddressPolicy().refusal("host.example", ip)
    assert refused is not None and why in refused


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert non_public(ip) is None
    assert AddressPolicy().refusal("host.example", ip) is None


def test_the_allow_list() -> None:
    policy = AddressPolicy.from_settings(
        FetchSettings(allow=("10.1.2.0/24", "fd12::/16", "media.corp", "*.intra.example"))
    )
    ip = ipaddress.ip_address
    assert policy.refusal("x", ip("10.1.2.3")) is None
    assert policy.refusal("x", ip("::ffff:10.1.2.3")) is None  # the same address in its mapped form
    assert policy.refusal("x", ip("fd12::5")) is None
    assert policy.refusal("x", ip("10.1.3.1")) is not None
    assert policy.refusal("x", ip("127.0.0.1")) is not None
    assert policy.refusal("Media.Corp.", ip("10.9.9.9")) is None  # a listed name, whatever it resolves to
    assert policy.refusal("files.intra.example", ip("192.168.0.4")) is None
    assert policy.refusal("intra.example", ip("192.168.0.4")) is not None  # "*." means subdomains only
    assert policy.refusal("evilintra.example", ip("192.168.0.4")) is not None


def test_loopback_only_when_allowed() -> None:
    ip = ipaddress.ip_address
    loopback = AddressPolicy(allow_loopback=True)
    for address in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"):
        assert AddressPolicy().refusal("x", ip(address)) is not None
        assert loopback.refusal("x", ip(address)) is None
    for address in ("10.0.0.1", "169.254.169.254", "::127.0.0.1", "2002:7f00:1::1", "0.0.0.0"):
        assert loopback.refusal("x", ip(address)) is not None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://8.8.8.8/x",
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
        "http:///x",
        "http://127.0.0.1/x",
        "http://127.0.0.1:22/",
        "https://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[fd00:ec2::254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://localhost:9091/admin",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://user:pw@127.0.0.1/",
    ],
)
def test_check_url_refuses_without_a_lookup(url: str) -> None:
    with pytest.raises(TargetRefused):
        AddressPolicy().check_url(url)


def test_check_url_leaves_names_to_the_resolver() -> None:
    assert AddressPolicy().check_url("https://files.example.com/a.pdf").host == "files.example.com"
    assert AddressPolicy(allow_loopback=True).check_url("http://localhost:8000/x").port == 8000


def test_settings() -> None:
    settings = load_settings(env={"WA_FETCH_ALLOW": " 10.0.0.0/8, Media.Corp , *.intra.example,192.168.1.7 "})
    assert settings.fetch.allow == ("10.0.0.0/8", "media.corp", "*.intra.example", "192.168.1.7/32")
    assert settings.fetch.allow_loopback is False  # a split deployment refuses loopback
    assert load_settings(env={}).fetch == FetchSettings()
    with pytest.raises(ConfigError, match="WA_FETCH_ALLOW"):
        load_settings(env={"WA_FETCH_ALLOW": "http://media.corp/"})
    # Only the embedded launcher turns loopback on.
    assert embedded_settings(load_settings(env={})).fetch.allow_loopback is True
    chosen = load_settings(env={"WA_FETCH_ALLOW_LOOPBACK": "false"})
    assert embedded_settings(chosen).fetch.allow_loopback is False


@pytest.mark.parametrize(
    ("url", "under"),
    [
        ("https://cdn.example.com/media/a.pdf", True),
        ("https://CDN.example.com:443/media/sub/a.pdf", True),
        ("https://cdn.example.com/media", True),
        ("https://cdn.example.com/media-evil/a.pdf", False),
        ("https://cdn.example.com/other/a.pdf", False),
        ("https://cdn.example.com/media/../admin", False),  # normalised to /admin
        ("https://cdn.example.com/media/%2e%2e/admin", False),
        ("https://cdn.example.com/media/..%2fadmin", False),
        ("https://cdn.example.com/media/..%5cadmin", False),
        ("http://cdn.example.com/media/a.pdf", False),  # not over plain HTTP
        ("https://cdn.example.com:8443/media/a.pdf", False),
        ("https://cdn.example.com.evil.example/media/a.pdf", False),
        ("https://cdn.example.com@evil.example/media/a.pdf", False),
        ("https://evil.example/media/a.pdf?https://cdn.example.com/media/", False),
    ],
)
def test_under_prefix(url: str, under: bool) -> None:
    assert under_prefix(url, "https://cdn.example.com/media") is under
    assert under_prefix(url, "https://cdn.example.com/media/") is (under and url != "https://cdn.example.com/media")


def test_provider_prefix_is_validated() -> None:
    config = {"bearer": "t"}
    assert MediaProvider.model_validate({"name": "a", "config": config}).url_prefix is None
    good = {"name": "a", "url_prefix": "https://cdn.example.com/media/", "config": config}
    assert MediaProvider.model_validate(good).url_prefix == "https://cdn.example.com/media/"
    for bad in ("/media/", "ftp://cdn.example.com/", "https://u:p@cdn.example.com/", "https://cdn.example.com/?a=1"):
        with pytest.raises(ValueError, match="url_prefix"):
            MediaProvider.model_validate({"name": "a", "url_prefix": bad, "config": config})


async def test_resolver_refuses_names_of_refused_addresses() -> None:
    """``localhost`` through the real ``getaddrinfo``: the addresses are what is checked, not the name."""
    with pytest.raises(TargetRefused, match="loopback"):
        await GuardedResolver(AddressPolicy()).resolve("localhost", 80, socket.AF_INET)
    found = await GuardedResolver(AddressPolicy(allow_loopback=True)).resolve("localhost", 80, socket.AF_INET)
    assert found and all(ipaddress.ip_address(r["host"]).is_loopback for r in found)
    assert all(r["flags"] & socket.AI_NUMERICHOST for r in found)  # connected to as given, never looked up again


async def test_connector_never_connects_to_a_refused_address() -> None:
    """Even a request that skips ``check_url`` (a name) goes nowhere the policy refuses."""
    server = await Recorder().start()
    try:
        async with aiohttp.ClientSession(connector=AddressPolicy().connector()) as http:
            with pytest.raises(aiohttp.ClientConnectorError) as info:
                await http.get(f"http://localhost:{server.port}/secret")
            refused = refusal_in(info.value)
            assert refused is not None and "loopback" in refused.reason
        assert server.seen == []
        allowed = AddressPolicy.from_settings(FetchSettings(allow=("127.0.0.1",)))
        async with aiohttp.ClientSession(connector=allowed.connector()) as http, http.get(server.url("/x")) as resp:
            assert resp.status == 404
        assert [s.path for s in server.seen] == ["/x"]
    finally:
        await server.stop()
