"""The QUICK START printed by ``openprem run``; README.md carries the same commands (a test keeps them equal).

One source of truth: ``commands()`` renders the shell block, ``banner()`` wraps it with the addresses of the
running install.  README.md holds ``commands()`` for the default addresses verbatim between the
``<!-- quickstart:begin -->`` and ``<!-- quickstart:end -->`` markers; ``python -m openprem quickstart``
prints it again.
"""

from __future__ import annotations

# The demo business number (registered in the quick start) and the demo phone chatd creates with
# WA_SANDBOX_DEMO=1.
BUSINESS_CC = "1"
BUSINESS_NUMBER = "2025550100"
BUSINESS_WA_ID = BUSINESS_CC + BUSINESS_NUMBER
DEMO_PHONE = "12025550123"
DEMO_PASSWORD = "OpenPrem-Demo-1"
DEFAULT_API = "https://localhost:9090/v1"
DEFAULT_ADMIN = "http://127.0.0.1:9091/admin"
WEBHOOK_PORT = 8000

_COMMANDS = """\
# (a) Log in as admin (default password "secret"); the first login must set a new password.
#     Later logins: curl -sk -X POST "$API/users/login" -u admin:{password}
API={api}
TOKEN=$(curl -sk -X POST "$API/users/login" -u admin:secret -H 'Content-Type: application/json' \\
  -d '{{"new_password":"{password}"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["users"][0]["token"])')
echo "$TOKEN"

# (b) Get a verified-name certificate from the sandbox and register the demo number (expect HTTP 202).
CERT=$(.venv/bin/python -m chatd cert --cc {cc} --phone-number {number} --vname "OpenPrem Demo")
curl -sk -X POST "$API/account" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"cc":"{cc}","phone_number":"{number}","method":"sms","cert":"'"$CERT"'"}}' -w '\\nHTTP %{{http_code}}\\n'

# (c) Read the code the sandbox "sent by SMS" and verify it; health then says "connected".
CODE=$(.venv/bin/python -m chatd code {wa_id})
curl -sk -X POST "$API/account/verify" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"code":"'"$CODE"'"}}' -w '\\nHTTP %{{http_code}}\\n'
curl -sk "$API/health" -H "Authorization: Bearer $TOKEN"; echo

# (d) In a third terminal, start a webhook receiver that prints every POST and answers 200:
#       .venv/bin/python -m openprem webhook-echo --port {webhook_port}
#     then point the webhooks at it:
curl -sk -X PATCH "$API/settings/application" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"webhooks":{{"url":"http://127.0.0.1:{webhook_port}/webhook"}}}}' -w '\\nHTTP %{{http_code}}\\n'

# (e) Send a text to the demo phone {phone}; its delivered and read statuses arrive at the webhook.
curl -sk -X POST "$API/messages" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
  -d '{{"to":"{phone}","type":"text","text":{{"body":"Hello from OpenPrem"}}}}'; echo

# (f) See it on the phone (what the phone received and decrypted).
.venv/bin/python -m chatd inbox {phone}

# (g) Make the phone reply; the inbound message arrives at the webhook.
.venv/bin/python -m chatd send {phone} --to {wa_id} --text "Hi back"
"""


def commands(api: str = DEFAULT_API) -> str:
    """The quick-start shell block, ready to paste (from the repository root) into a second terminal."""
    return _COMMANDS.format(
        api=api,
        password=DEMO_PASSWORD,
        cc=BUSINESS_CC,
        number=BUSINESS_NUMBER,
        wa_id=BUSINESS_WA_ID,
        phone=DEMO_PHONE,
        webhook_port=WEBHOOK_PORT,
    )


def banner(api: str = DEFAULT_API, sandbox_admin: str | None = DEFAULT_ADMIN, data_dir: str = "var/") -> str:
    """What ``openprem run`` prints once everything is up."""
    rule = "=" * 100
    lines = [
        rule,
        "OpenPrem is running: webapp + coreapp"
        + (" + chatd (sandbox network)" if sandbox_admin else "")
        + ", SQLite, in-process bus. Ctrl-C stops it.",
        f"  REST API       {api}   (self-signed certificate: curl -k)",
    ]
    if sandbox_admin:
        lines.append(f"  Sandbox admin  {sandbox_admin}   (CLI: .venv/bin/python -m chatd --help)")
    lines += [
        f"  Data and logs  {data_dir}   (make clean-data wipes it)",
        "",
        "QUICK START: paste into another terminal, from the repository root.",
        rule,
        commands(api).rstrip("\n"),
        rule,
    ]
    return "\n".join(lines) + "\n"
