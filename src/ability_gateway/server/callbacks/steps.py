"""The delivery job (kind ``callback.deliver``): one attempt per step, on the spec's schedule.

Attempt n fails → the next is due ``schedule[n-1]`` later (10 s, 30 s, 1 min, 5 min,
10 min by default: 5 retries, 6 attempts), measured from the end of the failed attempt on
the database clock, so never early. After the last, the delivery is ``exhausted``.

Deliveries have slots of their own on each runner (``GATEWAY_RUNNER_DELIVERY_CONCURRENCY``),
apart from task steps, and at most ``GATEWAY_CALLBACK_TOKEN_CONCURRENCY`` of one token's are
in flight at once across every node (the claim counts them by the job's ``concurrency_key``,
the token): one tenant's slow receivers delay neither other tenants' tasks nor callbacks.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from ability_gateway.server.callbacks import repository
from ability_gateway.server.callbacks.repository import DELIVER_JOB
from ability_gateway.server.callbacks.sender import attempt, log_attempt
from ability_gateway.server.config import Settings
from ability_gateway.server.runner.steps import JobRegistry, KindPolicy, StepContext, StepResult

if TYPE_CHECKING:
    from ability_gateway.server.state import Services


def claim_policies(settings: Settings) -> dict[str, KindPolicy]:
    """How the runner claims deliveries: slots of their own, a per-token cap."""
    return {
        DELIVER_JOB: KindPolicy(
            slots=settings.runner_delivery_concurrency,
            per_key_cap=settings.callback_token_concurrency,
        )
    }


def next_delay(attempts_made: int, schedule: tuple[float, ...]) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` failed ones; None: give up."""
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    return schedule[attempts_made - 1]


def _crashed(conn: Connection, _task_id: str | None, payload: dict[str, Any], reason: str) -> None:
    delivery_id = payload.get("deliveryId")
    if isinstance(delivery_id, str):
        repository.give_up(conn, delivery_id, f"delivery job failed: {reason}")


async def deliver(ctx: StepContext[Services]) -> StepResult:
    gateway = ctx.gateway
    delivery_id = str(ctx.lease.payload.get("deliveryId"))
    async with gateway.db.read() as conn:
        delivery = await repository.load(conn, delivery_id)
    if delivery is None or delivery["state"] != "pending":
        return StepResult("done")
    settings = gateway.settings
    result = await attempt(
        gateway.callback_client, delivery, timeout=settings.callback_timeout_seconds
    )
    number = delivery["attempts"] + 1
    delay = None
    if result.ok:
        state = "delivered"
    elif result.gone:
        state = "gone"
    else:
        delay = next_delay(number, settings.callback_schedule)
        state = "pending" if delay is not None else "exhausted"
    gateway.metrics.delivery_attempt("retrying" if state == "pending" else state, number)
    log_attempt(delivery, number, result, "retrying" if state == "pending" else state, manual=False)
    writes = partial(
        repository.record_attempt,
        delivery_id=delivery_id,
        number=number,
        manual=False,
        duration_ms=result.duration_ms,
        http_status=result.http_status,
        error=result.error,
        excerpt=result.excerpt,
        node=ctx.owner,
        state=state,
        delay_ms=None if delay is None else int(delay * 1000),
    )
    if delay is not None:
        return StepResult("queued", delay_s=delay, writes=writes)
    return StepResult("done", writes=writes)


def register(jobs: JobRegistry) -> None:
    """The callbacks domain's job kind: one delivery attempt."""
    jobs.add(DELIVER_JOB, deliver, on_crash=_crashed)
