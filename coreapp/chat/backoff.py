"""Capped exponential backoff with full jitter for reconnects."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0) -> None:
        self._base = base_s
        self._cap = cap_s
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        """The next wait: uniform in [base/2, min(cap, base * 2**n)], so reconnecting nodes spread out."""
        ceiling = min(self._cap, self._base * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return random.uniform(min(self._base / 2, ceiling), ceiling)
