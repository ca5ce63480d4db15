"""``python -m chatd <command>``: the admin API from a shell (stdlib HTTP, so it works in any container).

Every admin route has a command (README "The sandbox" lists them); ``key=value`` arguments become a JSON body,
with true/false, integers and ``null`` typed and a value with a dot that parses as a number sent as one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_ADMIN_URL = "http://127.0.0.1:9091"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")  # listen addresses that mean "every address": reached on loopback


def default_admin_url(env: Mapping[str, str] | None = None, env_file: Path | None = None) -> str:
    """The admin API that chatd itself listens on: ``WA_SANDBOX_ADMIN_HOSTNAME``/``_PORT`` as chatd reads them.

    The environment wins over the env file (``WA_CONFIG_FILE``, else ``conf/whatsapp.conf`` in the working
    directory), as for ``python -m chatd`` serving; a wildcard listen address is reached on loopback.  Without
    either variable it is ``DEFAULT_ADMIN_URL``.
    """
    from shared.config import ConfigError, default_env_file, read_env_file  # here: `--admin-url` needs none of it

    source = os.environ if env is None else env
    values: dict[str, str] = {}
    path = default_env_file() if env is None and env_file is None else env_file
    if path is not None and path.exists():
        try:
            values.update(read_env_file(path))
        except ConfigError as exc:
            raise CliError(str(exc)) from None
    values.update({k: v for k, v in source.items() if k.startswith("WA_SANDBOX_ADMIN_")})
    host = values.get("WA_SANDBOX_ADMIN_HOSTNAME", "").strip()
    port = values.get("WA_SANDBOX_ADMIN_PORT", "").strip()
    if host in _WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port or 9091}"


class CliError(Exception):
    pass


def _call(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    if not base.startswith(("http://", "https://")):
        raise CliError(f"--admin-url must be an http(s) URL, got {base!r}")
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - admin URL chosen by the user
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise CliError(f"{exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise CliError(f"cannot reach the chatd admin API at {base}: {exc.reason}") from None


def _value(text: str) -> Any:
    """``key=value`` values: true/false/null and numbers are typed, the rest (versions like 2.41.3) stay strings."""
    if text.startswith(("{", "[")):  # e.g. auto_reply='{"type":"reaction"}'
        try:
            return json.loads(text)
        except ValueError:
            raise CliError(f"not valid JSON: {text!r}") from None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if text.isdigit() and (text == "0" or not text.startswith("0")):
        return int(text)
    if text.count(".") == 1:
        try:
            return float(text)
        except ValueError:
            pass
    return text


def _pairs(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"expected key=value, got {item!r}")
        out[key] = _value(value)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m chatd", description="chatd sandbox: serve, or drive it")
    p.add_argument(
        "--admin-url",
        default=None,
        help="chatd's admin API (default: http://WA_SANDBOX_ADMIN_HOSTNAME:WA_SANDBOX_ADMIN_PORT, else "
        f"{DEFAULT_ADMIN_URL})",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run chatd (the default without a command)")
    sub.add_parser("health")
    c = sub.add_parser("cert", help="issue a verified-name certificate")
    c.add_argument("--cc", required=True)
    c.add_argument("--phone-number", required=True)
    c.add_argument("--vname", required=True)
    sub.add_parser("code", help="the last registration code sent").add_argument("wa_id")
    c = sub.add_parser("phone-create")
    c.add_argument("wa_id")
    c.add_argument("--name")
    c.add_argument("--devices", type=int, default=1)
    c.add_argument("--offline", action="store_true")
    sub.add_parser("phone-get", help="one phone, or all").add_argument("wa_id", nargs="?")
    c = sub.add_parser("phone-set", help="e.g. phone-set 12025550123 online=false")
    c.add_argument("wa_id")
    c.add_argument("changes", nargs="+")
    sub.add_parser("inbox").add_argument("wa_id")
    c = sub.add_parser("send", help="the phone sends a text (--text) or any inbound type (--json) to a business")
    c.add_argument("wa_id")
    c.add_argument("--to", required=True)
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--text")
    what.add_argument(
        "--json", help='the message object, e.g. \'{"type":"reaction","reaction":{"message_id":"...","emoji":"👍"}}\''
    )
    c = sub.add_parser("read", help="the phone reads a message")
    c.add_argument("wa_id")
    c.add_argument("message_id")
    sub.add_parser("templates")
    c = sub.add_parser("template-create")
    c.add_argument("name")
    c.add_argument("--language", default="en_US")
    c.add_argument("--namespace")
    c.add_argument("--status", default="approved")
    c.add_argument("--body", default="Hello {{1}}")
    c.add_argument("--approval-delay", type=float, default=0.0, help="seconds (sandbox clock) until approved")
    sub.add_parser("sent", help="what a phone sent").add_argument("wa_id")
    sub.add_parser("reinstall", help="the phone reinstalls WhatsApp (new identity keys)").add_argument("wa_id")
    c = sub.add_parser("change-number", help="the phone's user moves to a new number")
    c.add_argument("wa_id")
    c.add_argument("new_wa_id")
    sub.add_parser("policy")
    sub.add_parser("policy-set", help="e.g. policy-set turkey=restricted").add_argument("changes", nargs="+")
    sub.add_parser("limits")
    c = sub.add_parser("limits-set", help="e.g. limits-set enabled=true pair_burst=45 min_client_version=2.41.3")
    c.add_argument("changes", nargs="+")
    c = sub.add_parser("business-limits", help="e.g. business-limits 16315551000 quality_limited=true")
    c.add_argument("wa_id")
    c.add_argument("changes", nargs="+")
    sub.add_parser("kick", help="close a business's session (it reconnects)").add_argument("wa_id")
    sub.add_parser("businesses")
    c = sub.add_parser("fault", help="e.g. fault refuse_port port=5222 / fault drop_after frames=3")
    c.add_argument("kind")
    c.add_argument("params", nargs="*")
    sub.add_parser("faults")
    sub.add_parser("clear-faults")
    sub.add_parser("clock")
    sub.add_parser("clock-advance").add_argument("seconds", type=float)
    return p


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    cmd = args.command
    if cmd == "serve":
        from chatd.__main__ import serve  # here, not at the top: the admin commands need none of chatd

        return asyncio.run(serve())
    try:
        url = args.admin_url or default_admin_url()
        if cmd == "cert":
            body = {"cc": args.cc, "phone_number": args.phone_number, "vname": args.vname}
            print(_call(url, "POST", "/admin/certificates", body)["cert"])
            return 0
        if cmd == "code":
            print(_call(url, "GET", f"/admin/codes/{args.wa_id.lstrip('+')}")["code"])
            return 0
        result = _dispatch(url, args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _dispatch(url: str, args: argparse.Namespace) -> Any:
    cmd = args.command
    if cmd == "health":
        return _call(url, "GET", "/admin/health")
    if cmd == "phone-create":
        body = {"wa_id": args.wa_id, "devices": args.devices, "online": not args.offline}
        if args.name:
            body["name"] = args.name
        return _call(url, "POST", "/admin/phones", body)
    if cmd == "phone-get":
        return _call(url, "GET", f"/admin/phones/{args.wa_id}" if args.wa_id else "/admin/phones")
    if cmd == "phone-set":
        changes = _pairs(args.changes)
        if "client_version" in changes:
            changes["client_version"] = str(changes["client_version"])
        if "name" in changes:
            changes["name"] = str(changes["name"])
        return _call(url, "PATCH", f"/admin/phones/{args.wa_id}", changes)
    if cmd == "inbox":
        return _call(url, "GET", f"/admin/phones/{args.wa_id}/inbox")
    if cmd == "send":
        content = _value(args.json) if args.json is not None else {"type": "text", "text": {"body": args.text}}
        if not isinstance(content, dict):
            raise CliError("--json must be a JSON object with 'type' and its object")
        body = {**content, "to": args.to}
        return _call(url, "POST", f"/admin/phones/{args.wa_id}/send", body)
    if cmd == "read":
        return _call(url, "POST", f"/admin/phones/{args.wa_id}/read", {"id": args.message_id})
    if cmd == "templates":
        return _call(url, "GET", "/admin/templates")
    if cmd == "template-create":
        body = {"name": args.name, "language": args.language, "status": args.status}
        body["components"] = [{"type": "BODY", "text": args.body}]
        if args.namespace:
            body["namespace"] = args.namespace
        if args.approval_delay:
            body["approval_delay_s"] = args.approval_delay
        return _call(url, "POST", "/admin/templates", body)
    simple = _simple(args)
    if simple is not None:
        return _call(url, *simple)
    if cmd == "businesses":
        return _call(url, "GET", "/admin/businesses")
    if cmd == "fault":
        return _call(url, "POST", "/admin/faults", {"kind": args.kind, **_pairs(args.params)})
    if cmd == "faults":
        return _call(url, "GET", "/admin/faults")
    if cmd == "clear-faults":
        return _call(url, "DELETE", "/admin/faults")
    if cmd == "clock-advance":
        return _call(url, "POST", "/admin/clock/advance", {"seconds": args.seconds})
    raise CliError(f"unknown command {cmd}")


def _simple(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None] | None:
    """(method, path, body) of the commands that map straight onto one route."""
    cmd = args.command
    wa_id = str(getattr(args, "wa_id", "") or "").lstrip("+")
    routes: dict[str, tuple[str, str, dict[str, Any] | None]] = {
        "sent": ("GET", f"/admin/phones/{wa_id}/sent", None),
        "reinstall": ("POST", f"/admin/phones/{wa_id}/reinstall", {}),
        "policy": ("GET", "/admin/policy", None),
        "limits": ("GET", "/admin/limits", None),
        "kick": ("POST", f"/admin/businesses/{wa_id}/kick", {}),
        "clock": ("GET", "/admin/clock", None),
    }
    if cmd in routes:
        return routes[cmd]
    if cmd == "change-number":
        return "POST", f"/admin/phones/{wa_id}/change-number", {"new_wa_id": args.new_wa_id.lstrip("+")}
    if cmd == "policy-set":
        return "PATCH", "/admin/policy", _pairs(args.changes)
    if cmd == "limits-set":
        return "PATCH", "/admin/limits", _pairs(args.changes)
    if cmd == "business-limits":
        return "PATCH", f"/admin/limits/{wa_id}", _pairs(args.changes)
    return None
