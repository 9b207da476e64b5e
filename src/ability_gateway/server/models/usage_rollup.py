"""Usage rollups: one row per (token, ability, hour in UTC), kept up to date as tasks end.

A task's end (``tasks/terminal.py``) adds itself to the row of the hour it ended in (database
clock), in the same transaction as its final state, with one upsert. The row counts the
tasks by how they ended, the cache hits among them, their durations as a fixed histogram
(non-cumulative: ``ms_le_250`` counts durations in (100, 250] ms; ``ms_over_120000`` the rest)
and the Coze token usage their answers reported. Percentiles are estimated from summed
buckets (``usage/service.py``); nothing here is ever scanned per task.

Retention keeps these rows (they are small: at most tokens × abilities × 24 a day).
"""

from sqlalchemy import BigInteger, Column, Index, Integer, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata

# Upper bounds (ms) of the duration buckets; one more bucket holds everything above the last.
DURATION_BUCKETS_MS: tuple[int, ...] = (
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    120_000,
)
BUCKET_COLUMNS: tuple[str, ...] = (
    *(f"ms_le_{bound}" for bound in DURATION_BUCKETS_MS),
    f"ms_over_{DURATION_BUCKETS_MS[-1]}",
)
OUTCOME_COLUMNS = ("calls", "succeeded", "failed", "timeout", "canceled", "cache_hits")
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "total_tokens")

usage_rollups = Table(
    "usage_rollups",
    metadata,
    # The hour first: the admin's range over every token reads the primary key in order.
    Column("hour_start_ms", BigInteger, nullable=False),
    Column("token_id", String(32), nullable=False),
    Column("ability_id", String(100), nullable=False),
    *(Column(name, Integer, nullable=False) for name in OUTCOME_COLUMNS),
    Column("duration_sum_ms", BigInteger, nullable=False),
    *(Column(name, Integer, nullable=False) for name in BUCKET_COLUMNS),
    # Coze's `usage` of the answers (input_count, output_count, token_count); not of cache hits.
    *(Column(name, BigInteger, nullable=False) for name in TOKEN_COLUMNS),
    PrimaryKeyConstraint("hour_start_ms", "token_id", "ability_id"),
    # A token's own usage over a range.
    Index("ix_usage_rollups_token_id_hour_start_ms", "token_id", "hour_start_ms"),
    # The upsert's hour is a SQL expression (the database clock): fetch no key back.
    implicit_returning=False,
)
