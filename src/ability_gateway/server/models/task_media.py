"""Which media a task stored (its uploaded input, its mirrored outputs) and read.

One row per (task, content, role); ``role`` is ``input`` (an uploaded image the task was
given) or ``output`` (a result copied into our storage). The admin view of a task lists them.
"""

from sqlalchemy import BigInteger, Column, Index, PrimaryKeyConstraint, String, Table

from ability_gateway.server.models.base import metadata

task_media = Table(
    "task_media",
    metadata,
    Column("task_id", String(40), nullable=False),
    Column("media_key", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("task_id", "media_key", "role"),
    Index("ix_task_media_media_key", "media_key"),
)
