"""The configured executors (Coze accounts) and the choice of one per task.

``GATEWAY_EXECUTORS_FILE`` (YAML) lists accounts; ``GATEWAY_COZE_API_TOKEN`` adds one named
``default``. A task names one (``executorId``; unknown → 400) or gets a weighted choice
among those whose circuit breaker lets work through; a call that finds its account
unreachable fails over to another (see tasks/steps.py).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from limits import RateLimitItemPerSecond
from limits.aio.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, ConfigDict, Field

from ability_gateway.server.config import Settings
from ability_gateway.server.errors import BadRequest, FieldError, ServiceUnavailable
from ability_gateway.server.providers.coze.auth import CozeAuth, JwtAuth, TokenAuth
from ability_gateway.server.providers.coze.breaker import CircuitBreaker
from ability_gateway.server.providers.coze.client import CozeExecutor

logger = logging.getLogger(__name__)

DEFAULT_EXECUTOR_ID = "default"


class TokenAuthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["token"]
    token: str | None = None
    token_env: str | None = Field(None, alias="tokenEnv")


class JwtAuthSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    type: Literal["jwt"]
    app_id: str = Field(alias="appId")
    key_id: str = Field(alias="keyId")
    private_key_file: Path = Field(alias="privateKeyFile")
    duration_seconds: int = Field(900, alias="durationSeconds", ge=60, le=86399)


class ExecutorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    base_url: str = Field("https://api.coze.cn", alias="baseUrl")
    auth: Annotated[TokenAuthSpec | JwtAuthSpec, Field(discriminator="type")]
    weight: float = Field(1.0, gt=0)
    max_concurrency: int | None = Field(None, alias="maxConcurrency", ge=1)
    qps: float | None = Field(None, gt=0)
    allow_async: bool = Field(False, alias="allowAsync")
    allow_internal_image_urls: bool = Field(False, alias="allowInternalImageUrls")


class ExecutorsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    executors: list[ExecutorSpec]


def _auth(spec: ExecutorSpec, environ: dict[str, str]) -> CozeAuth:
    auth = spec.auth
    if isinstance(auth, TokenAuthSpec):
        token = auth.token or (environ.get(auth.token_env) if auth.token_env else None)
        if not token:
            raise ValueError(f"executor {spec.id}: auth needs `token` or a set `tokenEnv`")
        return TokenAuth(token)
    pem = auth.private_key_file.read_text(encoding="utf-8")
    return JwtAuth(
        spec.base_url, auth.app_id, auth.key_id, pem, duration_seconds=auth.duration_seconds
    )


class ExecutorRegistry:
    def __init__(self, executors: list[CozeExecutor]) -> None:
        self._executors = {e.id: e for e in executors}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        limiter: MovingWindowRateLimiter | None = None,
        environ: dict[str, str] | None = None,
    ) -> ExecutorRegistry:
        import os

        env = dict(os.environ if environ is None else environ)
        common: dict[str, Any] = {
            "max_connections": settings.coze_max_connections,
            "max_retries": settings.coze_max_retries,
            "retry_backoff": settings.coze_retry_backoff_seconds,
        }

        def breaker() -> CircuitBreaker:
            return CircuitBreaker(
                threshold=settings.breaker_threshold,
                cooldown=settings.breaker_open_seconds,
                probe_timeout=settings.breaker_probe_timeout_seconds,
            )

        executors: list[CozeExecutor] = []
        if settings.executors_file is not None:
            data = yaml.safe_load(settings.executors_file.read_text(encoding="utf-8"))
            for spec in ExecutorsFile.model_validate(data).executors:
                executors.append(
                    CozeExecutor(
                        spec.id,
                        spec.base_url,
                        _auth(spec, env),
                        allow_async=spec.allow_async,
                        allow_internal_image_urls=spec.allow_internal_image_urls,
                        weight=spec.weight,
                        max_concurrency=spec.max_concurrency,
                        qps=spec.qps,
                        breaker=breaker(),
                        **common,
                    )
                )
        ids = {e.id for e in executors}
        if len(ids) != len(executors):
            raise ValueError("executors file: duplicate executor ids")
        if settings.coze_api_token is not None and DEFAULT_EXECUTOR_ID not in ids:
            executors.append(
                CozeExecutor(
                    DEFAULT_EXECUTOR_ID,
                    settings.coze_base_url,
                    settings.coze_api_token.get_secret_value(),
                    allow_async=settings.coze_allow_async,
                    allow_internal_image_urls=settings.coze_allow_internal_image_urls,
                    breaker=breaker(),
                    **common,
                )
            )
        if limiter is not None:
            for executor in executors:
                if executor.qps:
                    executor.pacer = _pacer(limiter, executor.id, executor.qps)
        return cls(executors)

    def all(self) -> list[CozeExecutor]:
        return list(self._executors.values())

    def get(self, executor_id: str | None) -> CozeExecutor | None:
        """The executor a task was given (None if it is no longer configured)."""
        if executor_id is None:
            return next(iter(self._executors.values()), None)
        return self._executors.get(executor_id)

    def choose(self, executor_id: str | None) -> CozeExecutor:
        """The executor for a new task: the one it names, or a weighted pick among those
        whose breaker lets work through. Choosing takes no probe slot: the caller reserves
        one (``breaker.reserve()``) only when the task is sure to call Coze."""
        if executor_id is not None:
            executor = self._executors.get(executor_id)
            if executor is None:
                raise BadRequest(
                    "Unknown executor", [FieldError("executorId", f"no executor {executor_id!r}")]
                )
            return executor
        if not self._executors:
            raise ServiceUnavailable("No Coze executor is configured (set GATEWAY_COZE_API_TOKEN)")
        healthy = [e for e in self._executors.values() if e.breaker.available()]
        if not healthy:
            # The reasons (base URLs, connection errors) are for operators, not callers.
            reasons = "; ".join(f"{e.id}: {e.breaker.reason}" for e in self._executors.values())
            logger.warning("every Coze executor is unavailable: %s", reasons)
            raise ServiceUnavailable(
                "No Coze executor is available right now; try again shortly",
                headers={"Retry-After": str(self._retry_after())},
            )
        return random.choices(healthy, weights=[e.weight for e in healthy])[0]

    def _retry_after(self) -> int:
        return max(1, min(int(e.breaker.cooldown) for e in self._executors.values()))

    def alternatives(self, tried: set[str]) -> list[CozeExecutor]:
        """Healthy executors not tried yet, heaviest first (for failover)."""
        others = [
            e for e in self._executors.values() if e.id not in tried and e.breaker.available()
        ]
        return sorted(others, key=lambda e: -e.weight)

    async def close(self) -> None:
        for executor in self._executors.values():
            await executor.close()


def _pacer(limiter: MovingWindowRateLimiter, executor_id: str, qps: float) -> Any:
    item = RateLimitItemPerSecond(max(1, int(qps)))

    async def acquire() -> bool:
        return bool(await limiter.hit(item, "executor", executor_id))

    return acquire
