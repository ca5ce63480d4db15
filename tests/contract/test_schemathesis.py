"""Schemathesis against the live stack and its own ``/v1/openapi.json``.

Every operation gets a bounded, seeded run of positive and negative cases: no 500s, every status code, content
type and body must be the ones the document declares.  Runs in a worker thread (schemathesis is synchronous)
while the server keeps serving on the test's event loop.

Left out: ``POST /v1/users/logout`` (it would revoke the token the run authenticates with).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.contract.conftest import Live

MAX_EXAMPLES = 20
SEED = 20261
BUDGET_S = 150.0
SKIPPED = {("POST", "/v1/users/logout")}
NEGATIVE_SKIPPED: set[tuple[str, str]] = set()
"""Operations whose validation is knowingly looser than their schema (none so far)."""


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


@dataclass
class Report:
    failures: dict[str, list[str]] = field(default_factory=dict)
    calls: int = 0


def run_schemathesis(live: Live) -> Report:
    session = requests.Session()
    session.verify = str(live.ca_file)
    session.headers.update(live.auth())
    schema = schemathesis.openapi.from_url(live.url + "/v1/openapi.json", verify=str(live.ca_file))
    report = Report()
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
                return report
            _run_operation(operation, mode, session, live, report)
    return report


def _run_operation(operation: Any, mode: GenerationMode, session: requests.Session, live: Live, report: Report) -> None:
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

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

    test()


def _describe(case: Any, exc: BaseException) -> str:
    body = getattr(case, "body", None)
    text = str(exc).strip().splitlines()
    return f"{case.method} {case.formatted_path} query={case.query} body={body!r:.200} -> {' | '.join(text[:8])}"


@pytest.mark.timeout(240)
async def test_api_conforms_to_its_openapi_document(live: Live) -> None:
    report = await asyncio.to_thread(run_schemathesis, live)
    assert report.calls > 100
    assert not report.failures, "\n".join(
        f"{label}:\n  " + "\n  ".join(items) for label, items in sorted(report.failures.items())
    )
