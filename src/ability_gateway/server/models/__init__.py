"""Every table of the gateway, on one shared metadata (what Alembic compares against)."""

from ability_gateway.server.models.base import metadata
from ability_gateway.server.models.call_log import call_logs
from ability_gateway.server.models.console_session import console_sessions
from ability_gateway.server.models.delivery import deliveries, delivery_attempts
from ability_gateway.server.models.idempotency import idempotency_keys
from ability_gateway.server.models.job import jobs
from ability_gateway.server.models.media import media
from ability_gateway.server.models.media_token import media_tokens
from ability_gateway.server.models.provider_notice import provider_notices
from ability_gateway.server.models.quota_counter import quota_counters
from ability_gateway.server.models.result_cache import result_cache
from ability_gateway.server.models.task import tasks
from ability_gateway.server.models.task_media import task_media
from ability_gateway.server.models.token import tokens
from ability_gateway.server.models.usage_day_mark import usage_day_marks
from ability_gateway.server.models.usage_day_rollup import usage_day_rollups
from ability_gateway.server.models.usage_rollup import usage_rollups

__all__ = [
    "call_logs",
    "console_sessions",
    "deliveries",
    "delivery_attempts",
    "idempotency_keys",
    "jobs",
    "media",
    "media_tokens",
    "metadata",
    "provider_notices",
    "quota_counters",
    "result_cache",
    "task_media",
    "tasks",
    "tokens",
    "usage_day_marks",
    "usage_day_rollups",
    "usage_rollups",
]
