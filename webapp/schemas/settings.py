"""``PATCH /v1/settings/application``: validated against ``shared.appsettings`` so webapp and coreapp agree.

The partial is merged over the defaults to check keys and values (unknown key → 1010, bad value → 1009),
and what goes to coreapp is the partial with the normalised values ("3000" → 3000), nothing more: PATCH
leaves keys it does not name unchanged (reference §2.8).  Legacy keys of earlier On-Prem versions
(``shared.appsettings.LEGACY_KEYS``) are renamed to their current key or dropped first, one warning each.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from shared.appsettings import REVEAL_SECRETS, ApplicationSettings, apply_patch, translate_legacy
from shared.errors import ApiError, ErrorCode
from shared.netguard import AddressPolicy, TargetRefused
from webapp.envelope import validation_failed

log = logging.getLogger("openprem.webapp.settings")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def validate_application_patch(
    patch: dict[str, Any], *, allow_http_loopback: bool, targets: AddressPolicy | None = None
) -> dict[str, Any]:
    """The normalised partial, or ``ApiError``."""
    patch, legacy = translate_legacy(patch)
    for key, target in legacy.items():
        if target is None:
            log.warning("application setting %r is a legacy On-Prem key with no effect here: ignored", key)
        else:
            log.warning("application setting %r is a legacy On-Prem name: applied as %r", key, target)
    try:
        merged = apply_patch(ApplicationSettings(), patch)
    except ValidationError as exc:
        raise validation_failed(exc) from None
    webhooks = patch.get("webhooks")
    if isinstance(webhooks, dict) and "url" in webhooks:
        check_webhook_url(merged.webhooks.url, allow_http_loopback=allow_http_loopback, targets=targets)
    return _project(merged.model_dump(mode="json", context={REVEAL_SECRETS: True}), patch)


def check_webhook_url(url: str, *, allow_http_loopback: bool, targets: AddressPolicy | None = None) -> None:
    """HTTPS only ("HTTP will not work"); plain HTTP to loopback when the operator allows it (sandbox, tests).

    The host must also pass coreapp's target policy (``shared.netguard``) as far as that is known without a DNS
    lookup (an IP literal, ``localhost``): coreapp refuses the rest at delivery, on the resolved address."""
    if url == "":
        return  # clears the webhook
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "webhooks.url: not a valid URL") from None
    if not host:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "webhooks.url: must be an absolute https:// URL")
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http_loopback and host.lower() in LOOPBACK_HOSTS):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "webhooks.url: must be an https:// URL")
    try:
        (targets or AddressPolicy()).check_url(url)
    except TargetRefused:
        raise ApiError(
            ErrorCode.INVALID_PARAMETER,
            "webhooks.url: not a public address (internal hosts must be listed in WA_FETCH_ALLOW)",
        ) from None


def _project(validated: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``patch``, with the values from ``validated``."""
    out: dict[str, Any] = {}
    for key, value in patch.items():
        current = validated[key]
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = _project(current, value)
        else:
            out[key] = current
    return out
