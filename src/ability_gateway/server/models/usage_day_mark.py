"""How much of a local day is compacted into ``usage_day_rollups``: its hours before
``through_ms`` (the day's end once it is over; an hour boundary while it is today)."""

from sqlalchemy import BigInteger, Column, Integer, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata

usage_day_marks = Table(
    "usage_day_marks",
    metadata,
    Column("zone", String(64), nullable=False),
    Column("day", Integer, nullable=False),
    Column("through_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("zone", "day"),
)
