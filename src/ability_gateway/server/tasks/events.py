"""In-process wake-ups for requests waiting on a task (``Prefer: wait``).

A waiter also re-reads the task every second, so a task finished by another node
is seen too; the event only makes the common, local case immediate.
"""

from __future__ import annotations

import asyncio
import contextlib


class TaskEvents:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def notify(self, task_id: str) -> None:
        for future in self._waiters.pop(task_id, set()):
            if not future.done():
                future.set_result(None)

    async def wait(self, task_id: str, timeout: float) -> None:
        """Return when ``task_id`` is notified or after ``timeout`` seconds."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(task_id, set())
        waiters.add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            waiters.discard(future)
            if not waiters and self._waiters.get(task_id) is waiters:
                del self._waiters[task_id]
