"""job concurrency_key (per-token delivery cap) and manual redelivery limits

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 06:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concurrency_key", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_jobs_state_kind_concurrency_key",
            ["state", "kind", "concurrency_key"],
            unique=False,
        )
    # Deliveries queued before this version are capped too: their key is their token.
    op.execute(
        "UPDATE jobs SET concurrency_key = ("
        "SELECT deliveries.token_id FROM deliveries WHERE deliveries.task_id = jobs.task_id"
        ") WHERE kind = 'callback.deliver' AND state IN ('queued', 'running')"
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redeliver_started_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("redeliver_window_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("redeliver_count", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("redeliver_count")
        batch_op.drop_column("redeliver_window_at")
        batch_op.drop_column("redeliver_started_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_kind_concurrency_key")
        batch_op.drop_column("concurrency_key")
