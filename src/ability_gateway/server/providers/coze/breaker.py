"""A circuit breaker per executor (a Coze account), on each node; its client records each
call's outcome, the registry (executors/registry.py) builds one per executor.

    closed ──N consecutive failures──▶ open ──open period──▶ half_open
      ▲                                                         │ one probe
      └──────────────success────────────────────────────────────┘ (failure: open again)

Failures are the account's, not the workflow's: no answer, HTTP 5xx/429, throttling
codes, 5000. A Coze error about the request (4000, 720701013, …) proves the account works.

The probe of a half-open breaker is a *real* Coze call. A call in progress
(``call_started()`` … ``call_ended()``, on every path) keeps a half-open breaker from
taking more work. Between choosing an executor and its call starting, an inline task holds
a reservation (``reserve()``), given back (``release()``) as soon as the task has called or
will not call (a replay, a refusal, a re-queue); a reservation never given back expires
after ``probe_timeout``, so a lost probe can never keep the executor shut.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]

_probe_ids = itertools.count(1)


class CircuitBreaker:
    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        probe_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown  # the open period, in seconds
        self.probe_timeout = probe_timeout
        self.failures = 0
        self.reason: str | None = None
        self._clock = clock
        self._opened_at: float | None = None
        self._probe: int | None = None  # the slot handed out while half-open
        self._probe_at = 0.0
        self._calls = 0  # Coze calls of this executor in progress (this node)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def _probe_live(self) -> bool:
        return self._probe is not None and self._clock() - self._probe_at < self.probe_timeout

    def available(self) -> bool:
        """May a new task go to this executor now?"""
        state = self.state
        return state == "closed" or (
            state == "half_open" and self._calls == 0 and not self._probe_live()
        )

    def reserve(self) -> int | None:
        """Take the half-open probe slot for a task about to call Coze (None when closed)."""
        if self.state != "half_open" or self._probe_live() or self._calls:
            return None
        self._probe = next(_probe_ids)
        self._probe_at = self._clock()
        return self._probe

    def release(self, probe: int | None) -> None:
        """Give back a slot whose task will not call Coze (a no-op once a call recorded)."""
        if probe is not None and probe == self._probe:
            self._probe = None

    def call_started(self) -> None:
        self._calls += 1

    def call_ended(self) -> None:
        """Every call ends here, with an outcome (``record``) or without (canceled)."""
        self._calls -= 1

    def record(self, ok: bool, reason: str | None = None) -> None:
        """The outcome of a real call: it decides the state and frees the probe slot."""
        self._probe = None
        if ok:
            self.failures = 0
            self.reason = None
            self._opened_at = None
            return
        self.failures += 1
        self.reason = reason
        if self.failures >= self.threshold or self._opened_at is not None:
            self._opened_at = self._clock()
