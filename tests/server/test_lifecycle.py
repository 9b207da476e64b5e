"""The lifespan builds the process's parts; every job kind is registered by its domain."""

from __future__ import annotations

from ability_gateway.server.callbacks.repository import DELIVER_JOB
from ability_gateway.server.media.jobs import RETENTION_JOB
from ability_gateway.server.retention.jobs import RETENTION_JOB as DATA_RETENTION_JOB
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks.steps import TASK_JOB


def test_every_job_kind_a_domain_enqueues_has_its_step(gateway: GatewayState) -> None:
    jobs = gateway.runner.deps.jobs
    assert jobs.kinds == {TASK_JOB, DELIVER_JOB, RETENTION_JOB, DATA_RETENTION_JOB}
    assert jobs.crash_handler_for(TASK_JOB) is not None  # a task whose job crashes fails
    assert jobs.crash_handler_for(DELIVER_JOB) is not None
