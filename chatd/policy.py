"""The network's delivery rules (SANDBOX.md "Behaviours"; seeds "Message Undelivered"): who never gets a
business's message, who refuses it with an error, and the 24-hour re-engagement window.

Two kinds of outcome, as on the real network: *not delivered* (``Drop``: the business sees ``sent`` and then
nothing, the cause is never disclosed: blocked, sanctioned country, Turkey when restricted) and *rejected*
(``Reject``: a ``failed`` status with an On-Prem code: terms of service not accepted, client too old, experiment
group, outside the 24-hour window).  The global switches (``turkey``, ``reengagement_window``, the sanctioned
prefixes) are persisted and changed with ``PATCH /admin/policy``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from chatd.phones import PhoneState
from chatd.store import Store
from shared.errors import ErrorCode

log = logging.getLogger("openprem.chatd.policy")

HOLD_OFFLINE_S = 30 * 86400.0
"""How long the network keeps a message for a phone that stays offline; then it is dropped, unreported."""
WINDOW_S = 24 * 3600.0
"""The customer-service window: free-form messages only within this long after the phone last wrote."""
TOS_URL = "https://wa.me/tos/20210210"

SANCTIONED_PREFIXES: tuple[str, ...] = ("53", "98", "850", "963", "7978", "380623", "380642")
"""Cuba, Iran, North Korea, Syria and a documented SAMPLE for the three occupied Ukrainian regions: Crimea
mobile (+7 978) and the Donetsk (+380 62 3) / Luhansk (+380 64 2) landline areas.  The real lists are not
public; replace them with ``PATCH /admin/policy {"sanctioned_prefixes": [...]}``."""
TURKEY_PREFIX = "90"

MIN_VERSIONS: dict[str, tuple[int, ...]] = {
    "android": (2, 21, 15, 15),
    "smba": (2, 21, 15, 15),
    "ios": (2, 21, 170, 4),
    "smbi": (2, 21, 170, 4),
    "kaios": (2, 2130, 10),
    "web": (2, 2132, 6),
}
"""The oldest clients that may receive Business Platform messages (seeds); older ones get 1026."""
_VERSION = re.compile(r"^\s*(?:([A-Za-z]+)\s+)?(\d+(?:\.\d+)*)\s*$")
_POLICY = "policy"


@dataclass(frozen=True, slots=True)
class Drop:
    """Accepted, never delivered, nothing reported (the business sees ``sent`` only)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Accepted, then a ``failed`` status with this On-Prem error."""

    code: int
    title: str
    details: str | None = None


Verdict = Drop | Reject | None
"""``None``: the message may go to the phone."""


def version_too_old(client_version: str) -> bool:
    """``"android 2.21.15.14"`` → True.  Only a version naming its platform is compared: a bare number (chatd's
    default ``"2.24.1.6"``, older tests' ``"2.21.1"``), an unknown platform or anything unreadable counts as
    current, so the rule only bites when a test or demo asks for it."""
    match = _VERSION.match(client_version)
    if match is None:
        return False
    minimum = MIN_VERSIONS.get((match.group(1) or "").lower())
    if minimum is None:
        return False
    return tuple(int(p) for p in match.group(2).split(".")) < minimum


class PolicyState(msgspec.Struct, kw_only=True):
    """What ``GET /admin/policy`` shows and ``PATCH`` changes."""

    turkey: str = "allowed"  # "allowed" (since 2024-05-15) or "restricted" (the older rule)
    reengagement_window: bool = False  # OFF by default so a fresh phone can be written to: see SANDBOX.md
    sanctioned_prefixes: list[str] = msgspec.field(default_factory=lambda: list(SANCTIONED_PREFIXES))


class PolicyError(ValueError):
    """A PATCH the admin API answers 400."""


class Policy:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.state = PolicyState()

    async def load(self) -> None:
        for _, body in await self._store.load(_POLICY):
            self.state = msgspec.json.decode(body, type=PolicyState)

    def describe(self) -> dict[str, Any]:
        doc: dict[str, Any] = msgspec.to_builtins(self.state)
        return doc

    def update(self, changes: dict[str, Any]) -> None:
        turkey = changes.get("turkey", self.state.turkey)
        window = changes.get("reengagement_window", self.state.reengagement_window)
        prefixes = changes.get("sanctioned_prefixes", self.state.sanctioned_prefixes)
        unknown = set(changes) - set(PolicyState.__struct_fields__)
        if unknown:
            raise PolicyError(f"unknown policy field(s): {', '.join(sorted(unknown))}")
        if turkey not in ("allowed", "restricted"):
            raise PolicyError("'turkey' must be 'allowed' or 'restricted'")
        if not isinstance(window, bool):
            raise PolicyError("'reengagement_window' must be a boolean")
        if not isinstance(prefixes, list) or not all(isinstance(p, str) and p.isdigit() for p in prefixes):
            raise PolicyError("'sanctioned_prefixes' must be a list of digit strings")
        self.state = PolicyState(turkey=turkey, reengagement_window=window, sanctioned_prefixes=list(prefixes))
        self._store.put(_POLICY, "state", msgspec.json.encode(self.state).decode())
        log.warning("delivery policy now %s", self.describe())

    def on_accept(self, phone: PhoneState) -> Verdict:
        """What the network does with a message for this phone, decided when it accepts the ``Send``."""
        wa_id, client_version = phone.wa_id, phone.client_version
        if phone.blocked:
            return Drop("the phone blocked the business")
        if any(wa_id.startswith(p) for p in self.state.sanctioned_prefixes):
            return Drop("the phone is in a sanctioned country or region")
        if self.state.turkey == "restricted" and wa_id.startswith(TURKEY_PREFIX):
            return Drop("Turkish numbers are restricted")
        if not phone.terms_accepted:
            return Reject(
                ErrorCode.RECEIVER_INCAPABLE.code,
                ErrorCode.RECEIVER_INCAPABLE.title,
                "The user has not accepted the new Terms of Service and Privacy Policy; "
                f"send them {TOS_URL} to accept them",
            )
        if version_too_old(client_version):
            return Reject(
                ErrorCode.RECEIVER_INCAPABLE.code,
                ErrorCode.RECEIVER_INCAPABLE.title,
                f"The user's WhatsApp ({client_version}) is older than the minimum version",
            )
        if phone.experiment:
            return Reject(ErrorCode.EXPERIMENT.code, ErrorCode.EXPERIMENT.title)
        return None

    def outside_window(self, message_type: str, sent_at: float, last_wrote_at: float | None) -> Reject | None:
        """The 24-hour rule, judged on the decrypted type (templates always go) and the send time."""
        if not self.state.reengagement_window or message_type in ("template", "hsm"):
            return None
        if last_wrote_at is not None and sent_at - last_wrote_at <= WINDOW_S:
            return None
        return Reject(
            ErrorCode.REENGAGEMENT.code,
            ErrorCode.REENGAGEMENT.title,
            "More than 24 hours have passed since the customer last replied to this number; use a template",
        )
