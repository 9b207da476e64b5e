"""Gateway settings: one pydantic-settings class, every field read from ``GATEWAY_*``.

Defaults work on a laptop (SQLite under ``./data``); ``GATEWAY_ENV=production``
refuses to start with settings that only make sense in development.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, collapse_addresses, ip_network
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The console's session key on a laptop; refused in production (every node needs the same
# real one).
DEV_CONSOLE_SECRET = "development-console-session-secret-not-for-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses development-only settings."
    )
    host: str = Field("127.0.0.1", description="Interface `serve` binds to.")
    port: int = Field(8080, ge=0, le=65535, description="Port `serve` listens on.")
    data_dir: Path = Field(Path("data"), description="Directory for the SQLite file and media.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL. Default: `sqlite+aiosqlite:///<data_dir>/gateway.db`.",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="SQLite commit durability: FULL survives power loss, NORMAL process crashes.",
    )
    sqlite_busy_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a SQLite statement waits for another process's lock "
        "before the request answers 503.",
    )
    catalog_file: Path | None = Field(
        None, description="YAML file replacing the shipped catalog of abilities."
    )
    coze_base_url: str = Field(
        "https://api.coze.cn", description="Base URL of the default executor's Coze API."
    )
    coze_api_token: SecretStr | None = Field(
        None, description="PAT/SAT of the default executor; without it no executor is configured."
    )
    executors_file: Path | None = Field(
        None, description="YAML file listing Coze accounts (executors); see the README."
    )
    coze_allow_async: bool = Field(
        False,
        description="The default executor's plan allows `is_async` runs (long workflows poll).",
    )
    coze_allow_internal_image_urls: bool = Field(
        False,
        description="The default executor is a self-hosted Coze meant to read internal image "
        "URLs: image URLs given to it skip the egress policy.",
    )
    coze_max_connections: int = Field(
        256, ge=1, description="Pooled connections per executor to the Coze API."
    )
    coze_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a transient Coze failure, within the deadline."
    )
    coze_retry_backoff_seconds: float = Field(
        0.5, ge=0, description="First retry delay; doubles on each further retry."
    )
    breaker_threshold: int = Field(
        5, ge=1, description="Consecutive account failures that open an executor's breaker."
    )
    breaker_open_seconds: float = Field(
        30.0, ge=0, description="How long an open breaker refuses work before one probe call."
    )
    breaker_probe_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="A half-open probe slot not ended by a call within this time is freed.",
    )
    provider_callback_secret: SecretStr | None = Field(
        None,
        description="`whsec_…` secret verifying inbound completion notices of generation jobs.",
    )
    invoke_wait_seconds: float = Field(
        30.0, ge=0, le=60, description="Default wait of a sync invoke before it answers 202."
    )
    runner_enabled: bool = Field(True, description="Run background jobs inside `serve`.")
    runner_concurrency: int = Field(
        64, ge=1, description="Job steps one runner runs at once (callback deliveries apart)."
    )
    runner_delivery_concurrency: int = Field(
        32,
        ge=1,
        description="Callback deliveries one runner sends at once: a budget apart from task steps.",
    )
    runner_poll_seconds: float = Field(
        0.5, gt=0, description="How often an idle runner looks for due jobs."
    )
    lease_seconds: float = Field(
        30.0, gt=0, description="A job step's lease; a heartbeat renews it every third."
    )
    sweep_seconds: float = Field(
        5.0, gt=0, description="How often expired leases (crashed runners) are swept."
    )
    max_crashes: int = Field(
        3, ge=1, description="Crashes of a job's runner after which the job and its task fail."
    )
    idempotency_hours: float = Field(
        24.0, ge=24, description="How long an Idempotency-Key is remembered."
    )
    callback_retry_schedule: str = Field(
        "10,30,60,300,600",
        description="Seconds before each callback retry (5 retries = 6 attempts).",
    )
    callback_timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="Timeout of one callback attempt."
    )
    callback_token_concurrency: int = Field(
        8,
        ge=1,
        description="Callback deliveries of one token in flight at once, on every node together.",
    )
    callback_redeliver_per_minute: int = Field(
        5, ge=1, description="Manual redeliveries of one task's callback a minute (one at a time)."
    )
    callback_manual_attempts_kept: int = Field(
        10,
        ge=1,
        description="Manual attempts listed per callback (every scheduled one is kept).",
    )
    egress_allow: str = Field(
        "",
        description="CIDRs outbound HTTP may reach although not public (e.g. `127.0.0.0/8`).",
    )
    egress_allow_all_in_production: bool = Field(
        False,
        description="Let `GATEWAY_EGRESS_ALLOW` cover every address (the SSRF guard off) "
        "under `GATEWAY_ENV=production`; refused otherwise.",
    )
    storage_url: str | None = Field(
        None,
        description="Where media is stored: `file:///abs/dir` or `s3://bucket/prefix`. "
        "Default: `<data_dir>/media`.",
    )
    public_base_url: str | None = Field(
        None,
        description="The gateway's URL as Coze and apps reach it (local media URLs). "
        "Default: `http://<host>:<port>`.",
    )
    storage_public_url: str | None = Field(
        None,
        description="S3 only: public (CDN or bucket) URL of the prefix; unset → presigned URLs.",
    )
    s3_endpoint: str | None = Field(None, description="S3-compatible endpoint (OSS, MinIO).")
    s3_region: str | None = Field(None, description="S3 region.")
    s3_access_key_id: str | None = Field(None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret access key.")
    presign_seconds: int = Field(
        3600,
        ge=1,
        le=604800,
        description="Lifetime of presigned media URLs (S3 without a public URL).",
    )
    max_image_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest `imageBase64` image, in bytes (else 413)."
    )
    max_image_pixels: int = Field(
        8192 * 8192,
        ge=1,
        description="Largest `imageBase64` image, in pixels (width × height; else 413).",
    )
    media_max_download_bytes: int = Field(
        100 * 1024 * 1024, ge=1, description="Largest output file mirrored into storage."
    )
    media_download_timeout_seconds: float = Field(
        60.0, gt=0, description="Timeout of one output download."
    )
    media_retention_days: float = Field(
        0.0, ge=0, description="Delete media unused for this many days (0 = keep forever)."
    )
    retention_days: float = Field(
        0.0,
        ge=0,
        description="Delete finished tasks, their call logs and callback attempts this many "
        "days after they ended (0 = keep forever); usage rollups are kept.",
    )
    usage_rollups: bool = Field(
        True,
        description="Add every ended task to its hour's usage rollup (the usage endpoints' "
        "data); `false` stops recording usage (benchmarks measure the hot path without it).",
    )
    quota_timezone: str = Field(
        "UTC",
        description="IANA time zone of quota days and of usage grouped by day "
        "(e.g. `Asia/Shanghai`): daily quotas reset at its midnight.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis for limits shared by every node (`redis://host:6379/0`); "
        "unset → in memory.",
    )
    auth_cache_seconds: float = Field(
        2.0,
        ge=0,
        description="How long a valid token is remembered in-process (revocation delay).",
    )
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On shutdown, how long in-flight invocations may still run."
    )
    metrics_enabled: bool = Field(
        True, description="Record Prometheus metrics and serve them at `/metrics`."
    )
    console_enabled: bool = Field(True, description="Serve the web console at `/console`.")
    console_session_secret: SecretStr = Field(
        SecretStr(DEV_CONSOLE_SECRET),
        min_length=32,
        description="Keys console session ids and CSRF tokens; the same on every node "
        "(32+ characters). Its development default is refused under `GATEWAY_ENV=production`.",
    )
    console_session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="How long a console sign-in lasts."
    )
    metrics_token_labels: bool = Field(
        False,
        description="Also count invocations by token id (`gateway_token_invocations`): one "
        "series per token and outcome, so off by default.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="A bearer token that may read `/metrics` besides admin tokens "
        "(for a scraper that holds no gateway token).",
    )
    log_level: str = Field("INFO", description="Root log level.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`text` (readable lines) or `json` (one JSON object a line)."
    )
    access_log: bool = Field(
        True,
        description="Log one line per HTTP request (`request.end`, at INFO; "
        "uvicorn's own access log is always off).",
    )
    otel_enabled: bool | None = Field(
        None,
        description="OpenTelemetry traces (the `otel` extra). Unset: on when opentelemetry-sdk "
        "is installed and the OTEL_* variables name an exporter.",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers) `serve` reads (else 431).",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Time a client has to send a request's head before `serve` answers 408.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'gateway.db'}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'media').resolve()}"

    @property
    def resolved_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def callback_schedule(self) -> tuple[float, ...]:
        return tuple(
            float(part) for part in self.callback_retry_schedule.split(",") if part.strip()
        )

    @property
    def egress_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(
            ip_network(part.strip(), strict=False)
            for part in self.egress_allow.split(",")
            if part.strip()
        )

    @field_validator("callback_retry_schedule")
    @classmethod
    def _schedule_is_seconds(cls, value: str) -> str:
        try:
            delays = [float(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            raise ValueError("comma-separated seconds, e.g. 10,30,60,300,600") from exc
        if any(d < 0 or d != d for d in delays):
            raise ValueError("delays must be non-negative seconds")
        return value

    @field_validator("quota_timezone")
    @classmethod
    def _zone_is_known(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name: Asia/Shanghai)") from exc
        return value

    @field_validator("egress_allow")
    @classmethod
    def _allow_is_cidrs(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ip_network(part.strip(), strict=False)  # ValueError explains what is wrong
        return value

    @model_validator(mode="after")
    def _refuse_dev_settings_in_production(self) -> Settings:
        if self.env == "production":
            token = self.coze_api_token.get_secret_value() if self.coze_api_token else ""
            if token == "pat_simulator":
                raise ValueError("GATEWAY_COZE_API_TOKEN is the simulator's token in production")
            if self.console_session_secret.get_secret_value() == DEV_CONSOLE_SECRET:
                raise ValueError(
                    "GATEWAY_CONSOLE_SESSION_SECRET is its development default in production: "
                    "set a random value (the same on every node), e.g. `openssl rand -hex 32`"
                )
            if allows_every_address(self.egress_networks) and not (
                self.egress_allow_all_in_production
            ):
                raise ValueError(
                    "GATEWAY_EGRESS_ALLOW covers every address, which turns the SSRF guard off: "
                    "list only the internal networks callbacks and media may reach, or set "
                    "GATEWAY_EGRESS_ALLOW_ALL_IN_PRODUCTION=true to mean it"
                )
        return self


def allows_every_address(networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    """Whether ``networks`` together cover all of IPv4 (0.0.0.0/0) or all of IPv6 (::/0)."""
    v4 = [n for n in networks if isinstance(n, IPv4Network)]
    v6 = [n for n in networks if isinstance(n, IPv6Network)]
    everything_v4 = any(merged.prefixlen == 0 for merged in collapse_addresses(v4))
    everything_v6 = any(merged.prefixlen == 0 for merged in collapse_addresses(v6))
    return everything_v4 or everything_v6


@lru_cache
def get_settings() -> Settings:
    return Settings()
