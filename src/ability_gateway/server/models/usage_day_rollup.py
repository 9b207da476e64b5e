"""Usage of whole local days, compacted from the hourly rollups when a usage query needs them.

An hourly row never changes once its hour is over (a task is added to the hour it ends in, by
the database clock), so a day's hours can be summed once and kept: one row per (time zone,
local day, token, ability), with the counters of ``usage_rollups``. ``usage_day_marks`` says
which hours of a day are in it. Queries over many days read these instead of 24 hourly rows
per day (``usage/repository.py`` draws the rules). Kept forever, like the hourly rows.
"""

from sqlalchemy import BigInteger, Column, Integer, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata
from ability_gateway.server.models.usage_rollup import (
    BUCKET_COLUMNS,
    OUTCOME_COLUMNS,
    TOKEN_COLUMNS,
)

usage_day_rollups = Table(
    "usage_day_rollups",
    metadata,
    # An IANA time zone (GATEWAY_QUOTA_TIMEZONE when it was compacted).
    Column("zone", String(64), nullable=False),
    # The local day: days since 1970-01-01 in that zone's calendar.
    Column("day", Integer, nullable=False),
    Column("token_id", String(32), nullable=False),
    Column("ability_id", String(100), nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in OUTCOME_COLUMNS),
    Column("duration_sum_ms", BigInteger, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in BUCKET_COLUMNS),
    *(Column(name, BigInteger, nullable=False) for name in TOKEN_COLUMNS),
    PrimaryKeyConstraint("zone", "day", "token_id", "ability_id"),
)
