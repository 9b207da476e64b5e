"""When each token was last used, kept without a write per request.

Each process remembers the newest use of every token it authenticated and writes them all in
one statement at most once per ``interval`` (a minute by default); a token used on several
nodes gets the latest time any of them wrote (the write never moves it back). So the
admin's "last used" is at most about a minute old, and the hot path does one dict write.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from ability_gateway.server.auth import repository
from ability_gateway.server.db import Database

logger = logging.getLogger(__name__)


class LastUsed:
    def __init__(self, interval_seconds: float = 60.0) -> None:
        self.interval = interval_seconds
        self._pending: dict[str, int] = {}
        self._next_flush = 0.0
        self._flushing = False

    def mark(self, token_id: str) -> bool:
        """Note a use now; True when the caller should start a ``flush``."""
        self._pending[token_id] = int(time.time() * 1000)
        now = time.monotonic()
        if self._flushing or now < self._next_flush:
            return False
        self._next_flush = now + self.interval
        return True

    async def flush(self, db: Database) -> None:
        """Write what was marked since the last flush (a failed write is tried again later)."""
        if not self._pending:
            return
        used, self._pending = self._pending, {}
        self._flushing = True
        try:
            await db.run_write(partial(repository.touch, used=used))
        except Exception as exc:  # an outage: keep them for the next flush
            logger.warning("recording when tokens were last used failed: %s", type(exc).__name__)
            for token_id, at in used.items():
                self._pending[token_id] = max(at, self._pending.get(token_id, 0))
        finally:
            self._flushing = False
