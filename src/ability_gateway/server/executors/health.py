"""A circuit breaker per executor (per node).

    closed ──N consecutive failures──▶ open ──cooldown──▶ half_open
      ▲                                                     │ one probe
      └──────────────success────────────────────────────────┘ (failure: open again)

Failures are the account's, not the workflow's: no answer, HTTP 5xx/429, throttling
codes, 5000. A Coze error about the request (4000, 720701013, …) proves the account works.
"""

from __future__ import annotations

import time
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, *, threshold: int = 5, cooldown: float = 30.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.reason: str | None = None
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if time.monotonic() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def available(self) -> bool:
        """May a new task go to this executor now?"""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def begin(self) -> None:
        if self.state == "half_open":
            self._probing = True

    def record(self, ok: bool, reason: str | None = None) -> None:
        self._probing = False
        if ok:
            self.failures = 0
            self.reason = None
            self._opened_at = None
            return
        self.failures += 1
        self.reason = reason
        if self.failures >= self.threshold or self._opened_at is not None:
            self._opened_at = time.monotonic()
