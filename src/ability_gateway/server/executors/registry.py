"""The configured executors (Coze accounts) and the choice of one per task."""

from __future__ import annotations

from ability_gateway.server.config import Settings
from ability_gateway.server.errors import BadRequest, FieldError, ServiceUnavailable
from ability_gateway.server.providers.coze.client import CozeExecutor

DEFAULT_EXECUTOR_ID = "default"


class ExecutorRegistry:
    def __init__(self, executors: list[CozeExecutor]) -> None:
        self._executors = {e.id: e for e in executors}

    @classmethod
    def from_settings(cls, settings: Settings) -> ExecutorRegistry:
        executors = []
        if settings.coze_api_token is not None:
            executors.append(
                CozeExecutor(
                    DEFAULT_EXECUTOR_ID,
                    settings.coze_base_url,
                    settings.coze_api_token.get_secret_value(),
                    max_connections=settings.coze_max_connections,
                    max_retries=settings.coze_max_retries,
                    retry_backoff=settings.coze_retry_backoff_seconds,
                    allow_async=settings.coze_allow_async,
                )
            )
        return cls(executors)

    def get(self, executor_id: str | None) -> CozeExecutor | None:
        """The executor a task was given (None if it is no longer configured)."""
        if executor_id is None:
            return next(iter(self._executors.values()), None)
        return self._executors.get(executor_id)

    def choose(self, executor_id: str | None) -> CozeExecutor:
        if executor_id is not None:
            executor = self._executors.get(executor_id)
            if executor is None:
                raise BadRequest(
                    "Unknown executor", [FieldError("executorId", f"no executor {executor_id!r}")]
                )
            return executor
        if not self._executors:
            raise ServiceUnavailable("No Coze executor is configured (set GATEWAY_COZE_API_TOKEN)")
        return next(iter(self._executors.values()))

    async def close(self) -> None:
        for executor in self._executors.values():
            await executor.close()
