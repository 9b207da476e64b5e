"""usage rollups (hourly, and days compacted from them), quota counters, token quotas

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in models/usage_rollup.py (a migration keeps its own copy: the model may change later).
_BUCKETS = (50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000)
_OUTCOMES = ("calls", "succeeded", "failed", "timeout", "canceled", "cache_hits")
_TOKENS = ("input_tokens", "output_tokens", "total_tokens")


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_daily_invocations", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quota_daily_by_ability", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("quota_media_bytes", sa.BigInteger(), nullable=True))
    op.create_table(
        "usage_rollups",
        sa.Column("hour_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("ability_id", sa.String(length=100), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _OUTCOMES),
        sa.Column("duration_sum_ms", sa.BigInteger(), nullable=False),
        *(sa.Column(f"ms_le_{bound}", sa.Integer(), nullable=False) for bound in _BUCKETS),
        sa.Column(f"ms_over_{_BUCKETS[-1]}", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _TOKENS),
        sa.PrimaryKeyConstraint(
            "hour_start_ms", "token_id", "ability_id", name=op.f("pk_usage_rollups")
        ),
    )
    with op.batch_alter_table("usage_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_usage_rollups_token_id_hour_start_ms", ["token_id", "hour_start_ms"], unique=False
        )
    op.create_table(
        "usage_day_rollups",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("ability_id", sa.String(length=100), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _OUTCOMES),
        sa.Column("duration_sum_ms", sa.BigInteger(), nullable=False),
        *(sa.Column(f"ms_le_{bound}", sa.BigInteger(), nullable=False) for bound in _BUCKETS),
        sa.Column(f"ms_over_{_BUCKETS[-1]}", sa.BigInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _TOKENS),
        sa.PrimaryKeyConstraint(
            "zone", "day", "token_id", "ability_id", name=op.f("pk_usage_day_rollups")
        ),
    )
    op.create_table(
        "usage_day_marks",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("through_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("zone", "day", name=op.f("pk_usage_day_marks")),
    )
    op.create_table(
        "quota_counters",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "token_id", "scope", "window_start_ms", name=op.f("pk_quota_counters")
        ),
    )


def downgrade() -> None:
    op.drop_table("quota_counters")
    op.drop_table("usage_day_marks")
    op.drop_table("usage_day_rollups")
    with op.batch_alter_table("usage_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_rollups_token_id_hour_start_ms")
    op.drop_table("usage_rollups")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("quota_media_bytes")
        batch_op.drop_column("quota_daily_by_ability")
        batch_op.drop_column("quota_daily_invocations")
