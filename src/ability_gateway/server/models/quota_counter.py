"""Quota counters: a token's accepted invocations in one quota window (a local day).

``scope`` is ``*`` (every ability) or an ability id. A task's accept transaction takes one
unit with a conditional upsert that refuses at the cap (``usage/repository.py``), so two
nodes can never both take the last unit. Only tokens with a quota are counted.
"""

from sqlalchemy import BigInteger, Column, Integer, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata

quota_counters = Table(
    "quota_counters",
    metadata,
    Column("token_id", String(32), nullable=False),
    Column("scope", String(100), nullable=False),
    # The window's start (local midnight in GATEWAY_QUOTA_TIMEZONE), epoch ms.
    Column("window_start_ms", BigInteger, nullable=False),
    Column("n", Integer, nullable=False),
    PrimaryKeyConstraint("token_id", "scope", "window_start_ms"),
)
