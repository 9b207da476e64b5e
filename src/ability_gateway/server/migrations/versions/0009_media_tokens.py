"""media tokens: which token stored which media

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_tokens",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_used_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "token_id", name=op.f("pk_media_tokens")),
    )
    with op.batch_alter_table("media_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_media_tokens_token_id", ["token_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("media_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_media_tokens_token_id")
    op.drop_table("media_tokens")
