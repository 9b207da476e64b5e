"""token rotation and last use, call-log attempt numbers, task media links, admin indexes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 13:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_token_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("previous_token_expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("previous_callback_secret", sa.String(length=100), nullable=True)
        )
        batch_op.add_column(sa.Column("previous_secret_expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.BigInteger(), nullable=True))
        batch_op.create_unique_constraint(
            op.f("uq_tokens_previous_token_hash"), ["previous_token_hash"]
        )
    with op.batch_alter_table("call_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), nullable=True))
        batch_op.create_index("ix_call_logs_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_tasks_finished_at", ["finished_at"], unique=False)
    op.create_table(
        "task_media",
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("media_key", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "media_key", "role", name=op.f("pk_task_media")),
    )
    with op.batch_alter_table("task_media", schema=None) as batch_op:
        batch_op.create_index("ix_task_media_media_key", ["media_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("task_media", schema=None) as batch_op:
        batch_op.drop_index("ix_task_media_media_key")
    op.drop_table("task_media")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_finished_at")
        batch_op.drop_index("ix_tasks_created_at")
    with op.batch_alter_table("call_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_call_logs_created_at")
        batch_op.drop_column("attempt")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_tokens_previous_token_hash"), type_="unique")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("previous_secret_expires_at")
        batch_op.drop_column("previous_callback_secret")
        batch_op.drop_column("previous_token_expires_at")
        batch_op.drop_column("previous_token_hash")
