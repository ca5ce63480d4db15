"""Application settings (``/v1/settings/application``): the one model with every key, default and rule.

webapp validates a PATCH body against ``ApplicationSettings`` and coreapp stores the merged result and
acts on it; both read defaults from here so they can never disagree.

Validation is strict (decided for OpenPrem): booleans are JSON ``true``/``false`` only, integers are JSON
numbers (``"12"`` and ``true`` are 1009), with one exception the original documents: the two
``callback_*_ms`` keys also take a string of digits in PATCH ("3000") and are ints in GET.  Unknown keys are
1010 (``wa_id`` too: it is read-only, reported in GET by coreapp), except the ``LEGACY_KEYS`` that earlier
On-Prem versions documented and existing clients still send: those are applied under their current name when
there is one, otherwise dropped with a warning (``translate_legacy``).  Keys in ``RESTART_REQUIRED`` are stored at
once and applied as soon as the code using them reads them (On-Prem applied them only after a restart).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializationInfo, field_serializer, field_validator

MediaType = Literal["image", "video", "voice", "sticker", "audio", "document"]


RESTART_REQUIRED: tuple[tuple[str, ...], ...] = (
    ("callback_persist",),
    ("pass_through",),
    ("db_garbagecollector_enable",),
    ("webhooks", "max_concurrent_requests"),
)
"""Reference §2.8: the keys On-Prem applied only at the next restart."""


LEGACY_KEYS: Mapping[str, str | None] = {
    # The spelling of the reference's restart-required list (§2.8) for the garbage collector switch.
    "db_garbage_collector": "db_garbagecollector_enable",
    # Earlier clients' keys with nothing behind them in OpenPrem: the old callback list (now ``webhooks``), the
    # internal listener, per-API rate limits and test-build switches of the original's settings parser.
    "webcallbacks": None,
    "tcp_listen_address": None,
    "contacts_api_rate_limit": None,
    "control_api_rate_limit": None,
    "healthcheck_api_rate_limit": None,
    "messaging_api_rate_limit": None,
    "contacts_scrape_rate_limit": None,
    "unique_message_sends_rate_limit": None,
    "allow_nonexistent_users": None,
    "dogfood_user_limit": None,
    "template_send_side_validation_disabled": None,
    "axolotl_context_striping_logical_core_multiplier": None,
}
"""Top-level keys of earlier versions: legacy name -> the current key it is applied as, or ``None`` (ignored)."""


def translate_legacy(patch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str | None]]:
    """``patch`` with every ``LEGACY_KEYS`` member renamed to its current key or dropped, and what was done
    (legacy key -> current key, or ``None`` when dropped).  A current key sent beside its legacy name wins (the
    legacy one is dropped)."""
    out: dict[str, Any] = {}
    done: dict[str, str | None] = {}
    for key, value in patch.items():
        if key not in LEGACY_KEYS:
            out[key] = value
            continue
        target = LEGACY_KEYS[key]
        if target is not None and target not in patch:
            out[target] = value
            done[key] = target
        else:
            done[key] = None
    return out, done


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WebhookMessageFlags(_Strict):
    sent: bool = False
    delivered: bool = True
    read: bool = True


REVEAL_SECRETS = "reveal_secrets"
"""``model_dump(mode="json", context={REVEAL_SECRETS: True})`` keeps write-only values in clear."""
SECRET_MASK = "****"
"""What GET shows for a set ``webhooks.secret`` (it is write-only)."""


class Webhooks(_Strict):
    url: str = ""
    max_concurrent_requests: Literal[6, 12, 18, 24] = 6
    message: WebhookMessageFlags = WebhookMessageFlags()
    secret: str = Field(default="", max_length=256, repr=False)
    """OpenPrem: when set, every callback carries ``X-OpenPrem-Signature: sha256=<hex HMAC-SHA256 of the body>``.
    Write-only: a JSON dump (GET) shows ``"****"``; ``""`` turns signing off; never logged (``repr=False``)."""

    @field_validator("secret")
    @classmethod
    def _secret_shape(cls, value: str) -> str:
        if value and (len(value) < 16 or set(value) == {"*"}):
            # "****" is what GET shows: sending it back (GET → edit → PATCH) must not replace the real secret.
            raise ValueError("webhooks.secret must be empty or at least 16 characters (and not the mask)")
        return value

    @field_serializer("secret", when_used="json")
    def _mask_secret(self, value: str, info: SerializationInfo) -> str:
        # Masked in every JSON dump (the GET answer) unless the caller asks with ``REVEAL_SECRETS`` (webapp
        # normalising a PATCH before it goes to coreapp).
        context = info.context
        if isinstance(context, dict) and context.get(REVEAL_SECRETS):
            return value
        return SECRET_MASK if value else ""


class Media(_Strict):
    auto_download: list[MediaType] = ["image", "video", "voice", "sticker", "audio", "document"]


class GarbageCollector(_Strict):
    media: bool = False
    messages: bool = True


class ApplicationSettings(_Strict):
    """The full settings document with On-Prem defaults (reference §2.8)."""

    webhooks: Webhooks = Webhooks()
    callback_backoff_delay_ms: int = Field(default=3000, ge=0, le=3_600_000)
    max_callback_backoff_delay_ms: int = Field(default=900_000, ge=0, le=86_400_000)
    callback_persist: bool = True
    pass_through: bool = False
    sent_status: bool = False
    media: Media = Media()
    heartbeat_interval: int = Field(default=5, ge=1, le=3600)
    unhealthy_interval: int = Field(default=30, ge=1, le=3600)
    on_call_pager: str = Field(default="", max_length=64)
    axolotl_context_striping_disabled: bool = False
    notify_user_change_number: bool = True
    show_security_notifications: bool = True
    db_garbagecollector_enable: bool = True
    garbagecollector_enable: GarbageCollector = GarbageCollector()
    skip_referral_media_download: bool = False
    webhook_payload_conversation_pricingmodel_disabled: bool = False  # deprecated in v2.39; accepted, unused
    verbose_logging: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("callback_backoff_delay_ms", "max_callback_backoff_delay_ms", mode="before")
    @classmethod
    def _numeric_string(cls, value: Any) -> Any:
        # The original accepted these as strings in PATCH ("3000") and returned ints in GET.
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        return value

    def wants_sent_status(self) -> bool:
        return self.sent_status or self.webhooks.message.sent


def merge(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge a partial document: keys left out are left unchanged (PATCH semantics)."""
    merged = dict(current)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_patch(current: ApplicationSettings, patch: dict[str, Any]) -> ApplicationSettings:
    """Validate ``patch`` merged over ``current``; raises ``pydantic.ValidationError`` on a bad key or value."""
    return ApplicationSettings.model_validate(merge(current.model_dump(), patch))
