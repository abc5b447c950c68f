"""The index change log: one row per change to the set of accepted learnwares.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "index_changes",
        sa.Column("seq", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("learnware_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_index_changes")),
        sqlite_autoincrement=True,
    )
    # Every learnware accepted before the log existed enters the index through it.
    op.execute(
        "INSERT INTO index_changes (learnware_id, op, created_at) "
        "SELECT id, 'add', CURRENT_TIMESTAMP FROM learnwares WHERE status = 'accepted' ORDER BY id"
    )


def downgrade() -> None:
    op.drop_table("index_changes")
