"""task jobs keyed by their executor (the executor concurrency cap is a claim policy)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 13:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Task jobs queued before this version count against their executor's cap too.
    op.execute(
        "UPDATE jobs SET concurrency_key = ("
        "SELECT tasks.executor_id FROM tasks WHERE tasks.id = jobs.task_id"
        ") WHERE kind = 'task.run' AND state IN ('queued', 'running')"
    )


def downgrade() -> None:
    op.execute("UPDATE jobs SET concurrency_key = NULL WHERE kind = 'task.run'")
