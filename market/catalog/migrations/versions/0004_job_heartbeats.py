"""Job heartbeats: which worker process runs a job, when it last said so, and how many
workers were lost running it.

A running task refreshes ``heartbeat_at`` every few seconds; a job whose heartbeat stops (its
worker was killed) is sent again by a reaper within a minute, and ``worker_losses`` bounds how
often: a job that keeps killing its workers fails with a reason instead of being redelivered
for ever.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("worker_losses", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("worker_losses")
        batch.drop_column("heartbeat_at")
        batch.drop_column("worker")
