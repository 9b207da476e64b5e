"""provider notices: webhook-ids of completion notices already received

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_notices",
        sa.Column("webhook_id", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("webhook_id", "external_id", name=op.f("pk_provider_notices")),
    )
    with op.batch_alter_table("provider_notices", schema=None) as batch_op:
        batch_op.create_index("ix_provider_notices_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("provider_notices", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_notices_expires_at")
    op.drop_table("provider_notices")
