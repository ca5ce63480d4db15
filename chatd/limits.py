"""What the network allows a business: send rates, quality restriction, and the client build it still serves.

Rates are token buckets on the sandbox clock (advancing it refills them):
- per (business, phone) pair: ``pair_burst`` messages at once (45), then one per ``pair_interval_s`` (6 s);
- per business: ``throughput_mps`` messages per second (80 by default, 1..1000 per business);
- a business flagged ``quality_limited`` gets 471 for every new message.
A refused ``Send`` is answered ``Error`` 429 / 471; the message is not accepted, so the client keeps it and
sends it again later.  Enforcement is off until switched on (``enabled``): the other tests and the benchmark
send hundreds of messages to one phone, which the real pair limit would spread over many minutes.

``min_client_version``: logins from an older client build are refused with 1005 (the build expired).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from chatd.clock import Clock
from chatd.errors import Refused
from chatd.store import Store
from shared.errors import ErrorCode

log = logging.getLogger("openprem.chatd.limits")

_KIND, _KEY = "limits", "config"
MAX_MPS = 1000


class LimitError(ValueError):
    """A bad admin request (400)."""


@dataclass(slots=True)
class BusinessLimits:
    throughput_mps: int | None = None
    """None: the default ``Config.throughput_mps``."""
    quality_limited: bool = False


@dataclass(slots=True)
class Config:
    enabled: bool = False
    pair_burst: int = 45
    pair_interval_s: float = 6.0
    throughput_mps: int = 80
    min_client_version: str | None = None
    businesses: dict[str, BusinessLimits] = field(default_factory=dict)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float

    def refill(self, now: float, rate: float, burst: float) -> None:
        self.tokens = min(burst, self.tokens + max(0.0, now - self.stamp) * rate)
        self.stamp = now


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.41.3"`` → ``(2, 41, 3)``; parts that are not numbers count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in version.strip().split("."))


class Limits:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self.config = Config()
        self._pairs: dict[tuple[str, str], _Bucket] = {}
        self._business: dict[str, _Bucket] = {}

    async def load(self) -> None:
        for _, body in await self._store.load(_KIND):
            doc = json.loads(body)
            businesses = {k: BusinessLimits(**v) for k, v in doc.pop("businesses", {}).items()}
            self.config = Config(**doc, businesses=businesses)

    def describe(self) -> dict[str, Any]:
        return asdict(self.config)

    def update(self, body: dict[str, Any], business: str | None = None) -> None:
        """Apply an admin PATCH (global, or one business's ``throughput_mps`` / ``quality_limited``)."""
        if business is not None:
            limits = self.config.businesses.setdefault(business, BusinessLimits())
            for name, value in body.items():
                if name == "throughput_mps":
                    limits.throughput_mps = None if value is None else int(_number(name, value, 1, MAX_MPS, True))
                elif name == "quality_limited":
                    limits.quality_limited = _bool(name, value)
                else:
                    raise LimitError(f"unknown per-business limit {name!r}")
        else:
            cfg = self.config
            for name, value in body.items():
                if name == "enabled":
                    cfg.enabled = _bool(name, value)
                elif name == "pair_burst":
                    cfg.pair_burst = int(_number(name, value, 1, 10_000, True))
                elif name == "pair_interval_s":
                    cfg.pair_interval_s = _number(name, value, 0.001, 86_400, False)
                elif name == "throughput_mps":
                    cfg.throughput_mps = int(_number(name, value, 1, MAX_MPS, True))
                elif name == "min_client_version":
                    value = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
                    if value is not None and (not isinstance(value, str) or not any(version_tuple(value))):
                        raise LimitError("'min_client_version' must be a version such as '2.41.3', or null")
                    cfg.min_client_version = value
                else:
                    raise LimitError(f"unknown limit {name!r}")
        self._pairs.clear()
        self._business.clear()
        self._store.put(_KIND, _KEY, json.dumps(asdict(self.config)))

    def check_client(self, version: str) -> None:
        """Refuse (1005) a login from a build older than ``min_client_version``."""
        minimum = self.config.min_client_version
        if minimum is not None and version_tuple(version) < version_tuple(minimum):
            raise Refused(
                ErrorCode.ACCESS_DENIED.code,
                f"app expired: client version {version} is older than {minimum}; upgrade required",
                close=True,
            )

    def check_send(self, business: str, phone: str) -> None:
        """Take one message from the business's and the pair's budget, or refuse with 471 / 429."""
        cfg = self.config
        if not cfg.enabled:
            return
        own = cfg.businesses.get(business, BusinessLimits())
        if own.quality_limited:
            raise Refused(ErrorCode.SPAM_RATE_LIMIT.code, "Spam rate limit hit: sending restricted for quality")
        now = self._clock.now()
        mps = float(own.throughput_mps or cfg.throughput_mps)
        throughput = self._business.setdefault(business, _Bucket(mps, now))
        throughput.refill(now, mps, mps)
        pair = self._pairs.setdefault((business, phone), _Bucket(float(cfg.pair_burst), now))
        pair.refill(now, 1.0 / cfg.pair_interval_s, float(cfg.pair_burst))
        if pair.tokens < 1.0:
            raise Refused(
                ErrorCode.RATE_LIMIT_HIT.code,
                f"Rate limit hit: too many messages to +{phone} (burst {cfg.pair_burst}, "
                f"then 1 per {cfg.pair_interval_s:g} s)",
            )
        if throughput.tokens < 1.0:
            raise Refused(ErrorCode.RATE_LIMIT_HIT.code, f"Rate limit hit: more than {mps:g} messages per second")
        pair.tokens -= 1.0
        throughput.tokens -= 1.0


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise LimitError(f"'{name}' must be true or false")
    return value


def _number(name: str, value: Any, low: float, high: float, integer: bool) -> float:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not low <= value <= high:
        raise LimitError(f"'{name}' must be a{'n integer' if integer else ' number'} in [{low:g}, {high:g}]")
    return float(value)
