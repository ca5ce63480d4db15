"""Message templates as the network knows them: namespace, name, language, components and status.

The client syncs them at login (``GetTemplates``); tests and demos create more through the admin API.  A
couple of approved defaults exist so a fresh sandbox can send a template straight away.

An approval takes effect after a delay (``approval_delay_s``, up to 20 minutes of sandbox time): until then the
template shows as ``pending``, so a client that synced it answers 2001.  ``unrenderable`` is what a phone
checks when it renders a template message from its own copy: a wrong namespace, name, language or parameter
count is a "structure unavailable" failure that only the phone can see.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from chatd.clock import Clock
from chatd.policy import Reject
from chatd.store import Store
from shared.errors import ErrorCode
from shared.wire.frames import Template

_KIND = "template"
_DUE = "template_due"
MAX_APPROVAL_DELAY_S = 20 * 60
_PLACEHOLDER = re.compile(r"\{\{\s*(\d+)\s*\}\}")
_STATUSES = frozenset({"approved", "rejected", "paused", "disabled", "deleted", "pending"})
_decoder = msgspec.json.Decoder(Template)

DEFAULT_NAMESPACE = "openprem_demo"
DEFAULTS = [
    Template(
        namespace=DEFAULT_NAMESPACE,
        name="hello_world",
        language="en_US",
        status="approved",
        category="UTILITY",
        components=[{"type": "BODY", "text": "Hello World"}],
    ),
    Template(
        namespace=DEFAULT_NAMESPACE,
        name="order_update",
        language="en_US",
        status="approved",
        category="UTILITY",
        components=[{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way."}],
    ),
]


class TemplateError(ValueError):
    """A template body the admin API rejects with 400."""


def _key(t: Template) -> str:
    return f"{t.namespace}/{t.name}/{t.language}"


class TemplateStore:
    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or Clock()
        self._templates: dict[str, Template] = {}
        self._due: dict[str, float] = {}

    async def load(self) -> None:
        for key, body in await self._store.load(_KIND):
            self._templates[key] = _decoder.decode(body)
        for key, body in await self._store.load(_DUE):
            self._due[key] = float(body)
        for template in DEFAULTS:
            if _key(template) not in self._templates:
                self.put(template)

    def all(self) -> list[Template]:
        """As the network shows them now: an approval still in its delay is ``pending``."""
        now = self._clock.now()
        return [
            msgspec.structs.replace(t, status="pending") if self._due.get(key, 0.0) > now else t
            for key, t in self._templates.items()
        ]

    def approves_at(self, template: Template) -> float | None:
        """When a delayed approval takes effect (sandbox time), if it has not yet."""
        due = self._due.get(_key(template))
        return due if due is not None and due > self._clock.now() else None

    def put(self, template: Template, approval_delay_s: float = 0.0) -> None:
        """Create or replace (same namespace, name and language); an approval may take effect later."""
        key = _key(template)
        self._templates[key] = template
        self._store.put(_KIND, key, msgspec.json.encode(template).decode())
        if approval_delay_s > 0 and template.status == "approved":
            self._due[key] = self._clock.now() + approval_delay_s
            self._store.put(_DUE, key, repr(self._due[key]))
        elif self._due.pop(key, None) is not None:
            self._store.delete(_DUE, key)

    def render_failure(self, content: dict[str, Any]) -> Reject | None:
        """The ``failed`` receipt a phone answers a template it cannot render with (None: it renders)."""
        problem = self.unrenderable(content)
        if problem is None:
            return None
        code, reason = problem
        return Reject(code.code, f"Structure unavailable: {code.title}", reason)

    def unrenderable(self, content: dict[str, Any]) -> tuple[ErrorCode, str] | None:
        """Why a phone cannot render this ``template``/``hsm`` message from the network's copy (None: it can)."""
        kind = content.get("type")
        body = content.get(kind) if isinstance(kind, str) else None
        if kind not in ("template", "hsm") or not isinstance(body, dict):
            return None
        name = body.get("name") if kind == "template" else body.get("element_name")
        language = body.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        key = f"{body.get('namespace')}/{name}/{code}"
        template = self._templates.get(key)
        if template is None or self._due.get(key, 0.0) > self._clock.now():
            return ErrorCode.TEMPLATE_MISSING, f"no template {name} in {code} under namespace {body.get('namespace')}"
        if template.status != "approved":
            return ErrorCode.TEMPLATE_MISSING, f"template {name} in {code} is {template.status}"
        text = next((str(c.get("text", "")) for c in template.components if str(c.get("type")).upper() == "BODY"), "")
        expected = len(set(_PLACEHOLDER.findall(text)))
        given = _parameter_count(kind, body)
        if given != expected:
            return ErrorCode.TEMPLATE_PARAM_COUNT, f"template {name} takes {expected} body parameter(s), got {given}"
        return None

    @staticmethod
    def parse(body: dict[str, Any]) -> Template:
        """A template from an admin request; namespace defaults to the demo one, status to approved."""
        name, language = body.get("name"), body.get("language", "en_US")
        if not isinstance(name, str) or not name:
            raise TemplateError("'name' is required")
        if not isinstance(language, str) or not language:
            raise TemplateError("'language' must be a string such as 'en_US'")
        status = str(body.get("status", "approved")).lower()
        if status not in _STATUSES:
            raise TemplateError(f"'status' must be one of {', '.join(sorted(_STATUSES))}")
        components = body.get("components", [])
        if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
            raise TemplateError("'components' must be a list of objects")
        return Template(
            namespace=str(body.get("namespace", DEFAULT_NAMESPACE)),
            name=name,
            language=language,
            status=status,
            category=str(body.get("category", "UTILITY")),
            components=components,
        )


def approval_delay(body: dict[str, Any]) -> float:
    """``approval_delay_s`` of an admin request: 0 to 20 minutes."""
    value = body.get("approval_delay_s", 0)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= MAX_APPROVAL_DELAY_S:
        raise TemplateError(f"'approval_delay_s' must be a number of seconds in [0, {MAX_APPROVAL_DELAY_S}]")
    return float(value)


def _parameter_count(kind: str, body: dict[str, Any]) -> int:
    if kind == "hsm":
        params = body.get("localizable_params", [])
        return len(params) if isinstance(params, list) else 0
    components = body.get("components", [])
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).lower() == "body":
            params = component.get("parameters", [])
            return len(params) if isinstance(params, list) else 0
    return 0
