"""Run records: what ``GET /v1/workflows/{wid}/run_histories/{eid}`` reports about a run.

Every run, sync or async, gets a record. An async run moves through::

    Running ──▶ Success   (error_code "0", output double-encoded)
        └─────▶ Fail      (error_code "<code>", error_message set)

while a sync run is recorded already finished. Field shapes follow reference §3, including the
quirks clients must cope with: ``error_code`` is a *string* (``""`` while running) and ``output`` is
a JSON string whose ``Output`` value is itself a JSON string.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ability_gateway.simulator.protocol import debug_url, dumps

__all__ = ["RUN_MODE_ASYNC", "RUN_MODE_SYNC", "RunRecord", "RunStore", "Usage"]

RUN_MODE_SYNC = 0
RUN_MODE_ASYNC = 2
_RUNNING_OUTPUT = dumps({"Output": "null"})

RunStatus = Literal["Running", "Success", "Fail"]


@dataclass(frozen=True, slots=True)
class Usage:
    """LLM token usage as Coze reports it; all zeros for workflows without model nodes."""

    input_count: int = 0
    output_count: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "input_count": self.input_count,
            "output_count": self.output_count,
            "token_count": self.input_count + self.output_count,
        }


@dataclass(slots=True)
class RunRecord:
    """One workflow run as the run-history endpoint shows it."""

    execute_id: str
    workflow_id: str
    run_mode: int
    logid: str
    """The log id of the request that started the run."""
    connector_uid: str
    bot_id: str
    create_time: int
    update_time: int
    status: RunStatus = "Running"
    end_vars: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    error_code: int | None = None
    error_message: str = ""

    @property
    def debug_url(self) -> str:
        return debug_url(self.execute_id, self.workflow_id)

    def history_item(self) -> dict[str, Any]:
        """The ``data[0]`` object of the run-history response."""
        if self.status == "Success":
            output = dumps({"node_status": "{}", "Output": dumps(self.end_vars)})
            error_code = "0"
        elif self.status == "Fail":
            output = ""
            error_code = str(self.error_code)
        else:
            output = _RUNNING_OUTPUT
            error_code = ""
        return {
            "execute_id": self.execute_id,
            "execute_status": self.status,
            "bot_id": self.bot_id,
            "connector_id": "1024",
            "connector_uid": self.connector_uid,
            "run_mode": self.run_mode,
            "logid": self.logid,
            "create_time": self.create_time,
            "update_time": self.update_time,
            "output": output,
            "error_code": error_code,
            "error_message": self.error_message,
            "token": "0",
            "cost": "0.00000",
            "is_output_trimmed": False,
            "node_execute_status": {},
            "usage": self.usage.as_dict(),
            "debug_url": self.debug_url,
        }


class RunStore:
    """In-memory run records, bounded like Coze's own retention: the oldest are dropped first."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_runs: int = 50_000) -> None:
        self._clock = clock
        self._max_runs = max_runs
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()

    def start(
        self,
        *,
        execute_id: str,
        workflow_id: str,
        run_mode: int,
        logid: str,
        connector_uid: str,
        bot_id: str,
    ) -> RunRecord:
        """Record a run that has just started (status ``Running``)."""
        now = int(self._clock())
        record = RunRecord(
            execute_id=execute_id,
            workflow_id=workflow_id,
            run_mode=run_mode,
            logid=logid,
            connector_uid=connector_uid,
            bot_id=bot_id,
            create_time=now,
            update_time=now,
        )
        self._runs[execute_id] = record
        while len(self._runs) > self._max_runs:
            self._runs.popitem(last=False)
        return record

    def succeed(self, record: RunRecord, end_vars: dict[str, Any], usage: Usage) -> None:
        record.status = "Success"
        record.end_vars = end_vars
        record.usage = usage
        record.update_time = int(self._clock())

    def fail(self, record: RunRecord, code: int, message: str) -> None:
        record.status = "Fail"
        record.error_code = code
        record.error_message = message
        record.update_time = int(self._clock())

    def get(self, execute_id: str) -> RunRecord | None:
        return self._runs.get(execute_id)

    def __len__(self) -> int:
        return len(self._runs)
