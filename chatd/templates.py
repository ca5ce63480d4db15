"""Message templates as the network knows them: namespace, name, language, components and status.

The client syncs them at login (``GetTemplates``); tests and demos create more through the admin API.  A
couple of approved defaults exist so a fresh sandbox can send a template straight away.
"""

from __future__ import annotations

from typing import Any

import msgspec

from chatd.store import Store
from shared.wire.frames import Template

_KIND = "template"
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
    def __init__(self, store: Store) -> None:
        self._store = store
        self._templates: dict[str, Template] = {}

    async def load(self) -> None:
        for key, body in await self._store.load(_KIND):
            self._templates[key] = _decoder.decode(body)
        for template in DEFAULTS:
            if _key(template) not in self._templates:
                self.put(template)

    def all(self) -> list[Template]:
        return list(self._templates.values())

    def put(self, template: Template) -> None:
        """Create or replace (same namespace, name and language)."""
        self._templates[_key(template)] = template
        self._store.put(_KIND, _key(template), msgspec.json.encode(template).decode())

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
