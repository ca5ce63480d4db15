"""Schemathesis against the live stack and its own ``/v1/openapi.json``.

Every operation gets a bounded, seeded run of positive and negative cases: no 500s, every status code, content
type and body must be the ones the document declares (success bodies against their declared models: the
document has no catch-all ``2XX``).  Raw bodies are real files of the declared media type
(``tests.support.media_samples``), so uploads and photos reach their success paths too.  Successes random data
cannot reach (ids from an earlier answer, a valid password, a CA) run as fixed, validated sequences after the
fuzzing.  Every operation that declares a 2xx must have answered one, validated, unless ``NO_SUCCESS_HERE``
says why it cannot on this stack, so a run that only ever hits error paths fails.  Runs in a worker thread
(schemathesis is synchronous) while the server keeps serving on the test's event loop.

Not fuzzed: ``POST /v1/users/logout`` (it would revoke the token the run authenticates with); the success
sequence logs out a user of its own instead.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from coreapp.storage.webhooks import WebhookKind
from tests.contract.conftest import Live
from tests.support.media_samples import SAMPLES_BY_TYPE

MAX_EXAMPLES = 12
SEED = 20261
JSON = "application/json"
BUDGET_S = 300.0  # a bound against a runaway run, not a speed test: CI machines vary
SKIPPED = {("POST", "/v1/users/logout")}
NEGATIVE_SKIPPED: set[tuple[str, str]] = set()
"""Operations whose validation is knowingly looser than their schema (none so far)."""
NO_SUCCESS_HERE = {
    ("POST", "/v1/account"),
    ("POST", "/v1/account/verify"),
    ("POST", "/v1/account/shards"),
    ("POST", "/v1/settings/account/two-step"),
    ("DELETE", "/v1/settings/account/two-step"),
    ("POST", "/v1/contacts"),
    ("POST", "/v1/messages"),
    ("PUT", "/v1/messages/{message_id}"),
    ("POST", "/v1/certificates/external"),
    ("GET", "/v1/contacts/{wa_id}/identity"),
    ("PUT", "/v1/contacts/{wa_id}/identity"),
}
"""Declared successes this stack cannot reach: no chatd, so never registered (1011 or refused), and no peer ever
changed identity (the identity routes answer 404 until one has); installing an external certificate would swap
the one the run connects with.  Their error answers are still checked here;
their success bodies only by the e2e tests (not against this document)."""


def no_server_error(_ctx: Any, response: Any, case: Any) -> bool | None:
    """5xx other than 503 (1011 service not ready, declared where coreapp is involved) is a bug."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"{case.method} {case.formatted_path}: server error {response.status_code}")
    return None


CHECKS: list[Callable[..., Any]] = [
    no_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def register_raw_bodies(document: dict[str, Any]) -> None:
    """Every binary request media type in the document gets real files of that type (header + drawn tail).

    Without this, schemathesis sends random bytes (always 400) or cannot serialise the type at all, and the
    success paths of uploads are never checked.  A binary type without a sample fails here, by name.
    """
    wanted: set[str] = set()
    for item in document["paths"].values():
        for operation in item.values():
            for media_type, body in operation.get("requestBody", {}).get("content", {}).items():
                if body["schema"].get("format") == "binary" and not media_type.startswith("text/"):
                    wanted.add(media_type)  # text/* keeps schemathesis' own strings (PEM bodies share the type)
    missing = wanted - set(SAMPLES_BY_TYPE)
    assert not missing, f"no sample in tests/support/media_samples.py for {sorted(missing)}"
    for media_type in sorted(wanted):
        head = SAMPLES_BY_TYPE[media_type]()
        schemathesis.openapi.media_type(media_type, st.binary(max_size=64).map(head.__add__))


@dataclass
class Report:
    failures: dict[str, list[str]] = field(default_factory=dict)
    statuses: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    no_negative: list[str] = field(default_factory=list)
    calls: int = 0


def run_schemathesis(live: Live, loop: asyncio.AbstractEventLoop) -> Report:
    session = requests.Session()
    session.verify = str(live.ca_file)
    session.headers.update(live.auth())
    document = requests.get(live.url + "/v1/openapi.json", verify=str(live.ca_file), timeout=10).json()
    register_raw_bodies(document)
    schema = schemathesis.openapi.from_dict(document)
    report = Report()
    _run_fuzz(schema, session, live, report)
    _run_success_paths(schema, session, live, report, loop)
    return report


def _run_fuzz(schema: Any, session: requests.Session, live: Live, report: Report) -> None:
    deadline = time.monotonic() + BUDGET_S
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in SKIPPED:
            continue
        modes = [GenerationMode.POSITIVE]
        if key not in NEGATIVE_SKIPPED:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            if time.monotonic() > deadline:
                report.failures.setdefault("(budget)", []).append(f"time budget spent before {key} {mode.value}")
                return
            _run_operation(operation, mode, session, live, report)


def _record(report: Report, key: tuple[str, str]) -> Callable[..., None]:
    seen = report.statuses.setdefault(key, set())

    def record_status(_ctx: Any, response: Any, _case: Any) -> None:
        seen.add(response.status_code)

    return record_status


def _run_operation(operation: Any, mode: GenerationMode, session: requests.Session, live: Live, report: Report) -> None:
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
    checks = [*CHECKS, _record(report, (operation.method.upper(), operation.path))]
    if mode is GenerationMode.NEGATIVE:
        checks.append(negative_data_rejection)

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.seed(SEED)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def test(case: Any) -> None:
        report.calls += 1
        try:
            case.call_and_validate(base_url=live.url, session=session, checks=checks, verify=str(live.ca_file))
        except (Exception, BaseExceptionGroup) as exc:  # collect and carry on: one report lists every broken operation
            failures = report.failures.setdefault(label, [])
            if len(failures) < 3:
                failures.append(_describe(case, exc))

    try:
        test()
    except hypothesis.errors.Unsatisfiable:
        # Nothing about the operation can be made invalid (raw bodies come from fixed samples): no negative run.
        if mode is not GenerationMode.NEGATIVE:
            raise
        report.no_negative.append(label)


def _run_success_paths(
    schema: Any, session: requests.Session, live: Live, report: Report, loop: asyncio.AbstractEventLoop
) -> None:
    """The successes random data cannot reach (ids from an earlier answer, a valid password, a CA), each call
    validated like a generated one: status, content type and body against the document."""

    anonymous = requests.Session()  # login and logout carry their own Authorization header
    anonymous.verify = str(live.ca_file)

    def call(method: str, path: str, expect: int, via: requests.Session = session, **kwargs: Any) -> Any:
        operation = schema[path][method]
        checks = [*CHECKS, _record(report, (method, path))]
        case = operation.Case(**kwargs)
        try:
            response = case.call_and_validate(base_url=live.url, session=via, checks=checks, verify=str(live.ca_file))
        except (Exception, BaseExceptionGroup) as exc:
            report.failures.setdefault(f"{method} {path} [success path]", []).append(_describe(case, exc))
            return None
        if response.status_code != expect:
            report.failures.setdefault(f"{method} {path} [success path]", []).append(
                f"expected {expect}, got {response.status_code}: {response.text[:300]}"
            )
            return None
        return response

    password = "Contract-Pass1!"
    basic = {"Authorization": "Basic " + base64.b64encode(f"contract:{password}".encode()).decode()}
    call("POST", "/v1/users", 201, body={"username": "contract", "password": password}, media_type=JSON)
    call("GET", "/v1/users/{username}", 200, path_parameters={"username": "contract"})
    call("PUT", "/v1/users/{username}", 200, path_parameters={"username": "contract"}, body={"password": password})
    login = call("POST", "/v1/users/login", 200, via=anonymous, headers=basic)
    if login is not None:
        token = login.json()["users"][0]["token"]
        call("POST", "/v1/users/logout", 200, via=anonymous, headers={"Authorization": f"Bearer {token}"})
    call("DELETE", "/v1/users/{username}", 200, path_parameters={"username": "contract"})

    for media_type in ("image/png", "audio/ogg; codecs=opus", "text/plain"):
        upload = call("POST", "/v1/media", 201, body=SAMPLES_BY_TYPE[media_type](), media_type=media_type)
        media_id = {"media_id": upload.json()["media"][0]["id"] if upload is not None else "x"}
        call("GET", "/v1/media/{media_id}", 200, path_parameters=media_id)
        call("DELETE", "/v1/media/{media_id}", 200, path_parameters=media_id)

    photo = "/v1/settings/profile/photo"
    call("POST", photo, 200, body=SAMPLES_BY_TYPE["image/jpeg"](), media_type="image/jpeg")
    call("GET", photo, 200)
    call("GET", photo, 200, query={"format": "link"})
    multipart = {"file": SAMPLES_BY_TYPE["image/png"]()}
    call("POST", photo, 200, body=multipart, media_type="multipart/form-data")
    call("DELETE", photo, 200)

    compliance = "/v1/settings/business/compliance_info"
    contact = {"email": "care@example.com", "mobile_number": "+911234567890"}
    info = {
        "entity_name": "Acme Traders",
        "entity_type": "PARTNERSHIP",
        "is_registered": True,
        "grievance_officer_details": {"name": "Asha Rao", **contact},
        "customer_care_details": contact,
    }
    call("POST", compliance, 200, body=info, media_type=JSON)
    call("GET", compliance, 200)

    providers = "/v1/settings/application/media/providers"
    provider = {"name": "files", "type": "www", "config": {"basic": {"username": "u", "password": "p"}}}
    call("POST", providers, 200, body=[provider], media_type=JSON)
    call("GET", providers, 200)
    call("DELETE", providers + "/{name}", 200, path_parameters={"name": "files"})

    ca = "/v1/certificates/webhooks/ca"
    call("POST", ca, 200, body=live.ca_file.read_text(), media_type="text/plain")
    call("GET", ca, 200)
    call("DELETE", ca, 200)

    # A dead-lettered webhook to replay: queued and given up on in coreapp's store, on the server's loop.
    event_id = asyncio.run_coroutine_threadsafe(_dead_letter_one(live), loop).result(10)
    call("GET", "/v1/webhooks/dead", 200)
    call("POST", "/v1/webhooks/dead/{event_id}/replay", 200, path_parameters={"event_id": event_id})
    call("POST", "/v1/webhooks/dead/replay", 200)

    backup = call("POST", "/v1/settings/backup", 200, body={"password": password}, media_type=JSON)
    data = backup.json()["settings"]["data"] if backup is not None else ""
    call("POST", "/v1/settings/restore", 200, body={"password": password, "data": data}, media_type=JSON)


async def _dead_letter_one(live: Live) -> str:
    store = live.core.stores.webhooks
    await live.core.db.run("test.enqueue", lambda conn: store.enqueue_txn(conn, WebhookKind.ERROR, {"errors": []}))
    row = (await store.head(1000))[-1]
    assert await store.dead_letter(row, 1, "HTTP 500", "max_attempts")
    return row.event_id


def _describe(case: Any, exc: BaseException) -> str:
    body = getattr(case, "body", None)
    text = str(exc).strip().splitlines()
    return f"{case.method} {case.formatted_path} query={case.query} body={body!r:.200} -> {' | '.join(text[:8])}"


@pytest.mark.timeout(240)
async def test_api_conforms_to_its_openapi_document(live: Live) -> None:
    report = await asyncio.to_thread(run_schemathesis, live, asyncio.get_running_loop())
    assert report.calls > 100
    assert not report.failures, "\n".join(
        f"{label}:\n  " + "\n  ".join(items) for label, items in sorted(report.failures.items())
    )
    assert report.no_negative == ["GET /v1/openapi.json [negative]"]
    document = (await live.call("GET", "/v1/openapi.json", auth=False))[1]
    never = [
        f"{method.upper()} {path}: {sorted(report.statuses.get((method.upper(), path), ()))}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if any(status.startswith("2") for status in operation["responses"])
        and (method.upper(), path) not in NO_SUCCESS_HERE | SKIPPED
        and not any(200 <= code < 300 for code in report.statuses.get((method.upper(), path), ()))
    ]
    assert not never, "declared successes never answered (statuses seen):\n" + "\n".join(never)
