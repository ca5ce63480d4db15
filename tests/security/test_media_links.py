"""Issue 12 point 2: a media ``link`` in ``messages.send`` must not make coreapp fetch from inside the network.

Real CoreApp + in-process chatd + real HTTP servers on loopback addresses (127.0.0.1, 127.0.0.2: both loopback
on Linux, so one can be allow-listed while the other is refused).  Each server records what it got, so "refused"
means "never asked", not merely "answered with an error".
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coreapp.services.media_links import FETCH_FAILED, MAX_REDIRECTS
from shared.config import DbSettings, FetchSettings
from shared.errors import ApiError, ErrorCode
from tests.coreapp.conftest import PHONE, Core, CoreFactory, Sandbox, eventually, register
from tests.security.servers import Recorder
from tests.support import media_samples as samples

BEARER = "provider-secret-token"
GENERIC = f"document.link: {FETCH_FAILED}"


async def _core(sandbox: Sandbox, make_core: CoreFactory, db: DbSettings, fetch: FetchSettings) -> Core:
    await sandbox.admin("POST", "/admin/phones", {"wa_id": PHONE, "name": "Kerry Fisher"})
    core = await make_core(db, fetch=fetch)
    await register(core, sandbox)
    return core


async def _send(core: Core, link: str, provider: str | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {"link": link, "filename": "a.pdf"}
    if provider is not None:
        document["provider"] = {"name": provider}
    return await core.rpc("messages.send", {"to": PHONE, "type": "document", "document": document})


async def _refused(core: Core, link: str, provider: str | None = None) -> str:
    with pytest.raises(ApiError) as info:
        await _send(core, link, provider)
    assert info.value.code is ErrorCode.INVALID_PARAMETER, info.value
    return info.value.details or ""


async def _inbox_has(sandbox: Sandbox, message_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        inbox = (await sandbox.admin("GET", f"/admin/phones/{PHONE}/inbox"))["messages"]
        return next((m for m in inbox if m["id"] == message_id), None)

    found: dict[str, Any] = await eventually(find)
    return found


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Recorder, Recorder]]:
    """``inside`` on 127.0.0.1 and ``other`` on 127.0.0.2, both serving a PDF at /files/a.pdf."""
    inside, other = await Recorder("127.0.0.1").start(), await Recorder("127.0.0.2").start()
    for server in (inside, other):
        server.serve("/files/a.pdf", samples.pdf())
    try:
        yield inside, other
    finally:
        await inside.stop()
        await other.stop()


async def test_link_to_loopback_is_refused_unasked(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory, servers: tuple[Recorder, Recorder]
) -> None:
    """A split deployment (no allow-list): loopback in any spelling is refused, and the server never hears of it."""
    inside, _ = servers
    core = await _core(sandbox, make_core, sqlite_db, FetchSettings())
    port = inside.port
    links = [
        inside.url("/files/a.pdf"),
        f"http://localhost:{port}/files/a.pdf",
        f"http://[::ffff:127.0.0.1]:{port}/files/a.pdf",
        f"http://[::ffff:7f00:1]:{port}/files/a.pdf",
        f"http://user:pw@127.0.0.1:{port}/files/a.pdf",
        f"http://127.0.0.1:{sandbox.settings.admin_port}/admin/phones",  # the sandbox's admin API
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
    ]
    for link in links:
        assert await _refused(core, link) == GENERIC, link
    assert inside.seen == []


async def test_errors_do_not_tell_open_from_closed_ports(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory, servers: tuple[Recorder, Recorder]
) -> None:
    """Even for an allow-listed host: an open port answering 404, a closed port and an open non-HTTP port read the
    same, so the API is no port scanner."""
    inside, _ = servers
    core = await _core(sandbox, make_core, sqlite_db, FetchSettings(allow=("127.0.0.1",)))
    closed = Recorder()
    await closed.start()
    closed_port = closed.port
    await closed.stop()
    links = [
        inside.url("/missing.pdf"),
        f"http://127.0.0.1:{closed_port}/a.pdf",
        f"http://127.0.0.1:{sandbox.settings.port}/a.pdf",  # chatd's TLS chat port
    ]
    details = {await _refused(core, link) for link in links}
    assert details == {GENERIC}
    assert [s.path for s in inside.seen] == ["/missing.pdf"]


async def test_redirect_to_a_refused_address_is_not_followed(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory, servers: tuple[Recorder, Recorder]
) -> None:
    inside, other = servers
    core = await _core(sandbox, make_core, sqlite_db, FetchSettings(allow=("127.0.0.1",)))
    inside.redirect("/to-other", other.url("/files/a.pdf"))
    inside.redirect("/to-mapped", f"http://[::ffff:127.0.0.2]:{other.port}/files/a.pdf")
    inside.redirect("/to-metadata", "http://169.254.169.254/latest/meta-data/")
    inside.redirect("/to-file", "file:///etc/passwd")
    for path in ("/to-other", "/to-mapped", "/to-metadata", "/to-file"):
        assert await _refused(core, inside.url(path)) == GENERIC, path
    assert other.seen == []

    # A redirect between allowed places is followed, a few hops at most.
    inside.redirect("/hop", "/files/a.pdf", status=307)
    message_id = (await _send(core, inside.url("/hop")))["id"]
    document = (await _inbox_has(sandbox, message_id))["document"]
    assert document["sha256"] == hashlib.sha256(samples.pdf()).hexdigest()
    inside.redirect("/loop", "/loop")
    inside.seen.clear()
    assert await _refused(core, inside.url("/loop")) == GENERIC
    assert len(inside.seen) == MAX_REDIRECTS + 1


async def test_provider_credentials_stay_under_its_prefix(
    sqlite_db: DbSettings, sandbox: Sandbox, make_core: CoreFactory, servers: tuple[Recorder, Recorder]
) -> None:
    inside, other = servers
    core = await _core(sandbox, make_core, sqlite_db, FetchSettings(allow=("127.0.0.1", "127.0.0.2")))
    prefix = inside.url("/files/")
    providers = [
        {"name": "acme", "type": "www", "url_prefix": prefix, "config": {"bearer": BEARER}},
        {"name": "open", "type": "www", "config": {"basic": {"username": "u", "password": "p"}}},
    ]
    await core.app.stores.settings.put("media_providers", providers)

    # A link outside the prefix (another host, a look-alike path, a dot-segment, userinfo tricks) is refused
    # before any request: the credentials cannot leak.
    outside = [
        other.url("/files/a.pdf"),
        inside.url("/files-evil/a.pdf"),
        inside.url("/files/../admin"),
        f"http://127.0.0.1:{inside.port}@127.0.0.2:{other.port}/files/a.pdf",
        f"https://127.0.0.1:{inside.port}/files/a.pdf",
    ]
    for link in outside:
        assert "url_prefix" in await _refused(core, link, "acme"), link
    # A provider without a prefix never has its credentials sent.
    assert "url_prefix" in await _refused(core, inside.url("/files/a.pdf"), "open")
    assert inside.seen == [] and other.seen == []

    # Under the prefix: sent.  A redirect out of it is followed without them.
    message_id = (await _send(core, inside.url("/files/a.pdf"), "acme"))["id"]
    await _inbox_has(sandbox, message_id)
    assert inside.seen[-1].headers.get("Authorization") == f"Bearer {BEARER}"
    inside.redirect("/files/moved.pdf", other.url("/files/a.pdf"))
    message_id = (await _send(core, inside.url("/files/moved.pdf"), "acme"))["id"]
    await _inbox_has(sandbox, message_id)
    assert [s.path for s in other.seen] == ["/files/a.pdf"]
    assert "Authorization" not in other.seen[0].headers
    for seen in other.seen:
        assert BEARER not in str(seen.headers) and base64.b64encode(b"u:p").decode() not in str(seen.headers)
