"""Bulk submissions: a check job may belong to a bulk submission's job (``parent_id``), and a
user's unfinished checks are counted by one index range (their quota of pending checks).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
        batch.create_foreign_key(
            op.f("fk_jobs_parent_id_jobs"), "jobs", ["parent_id"], ["id"], ondelete="SET NULL"
        )
    op.create_index(op.f("ix_jobs_parent_id"), "jobs", ["parent_id"])
    op.create_index(op.f("ix_jobs_owner_kind_state"), "jobs", ["owner_id", "kind", "state"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_owner_kind_state"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_parent_id"), table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("fk_jobs_parent_id_jobs"), type_="foreignkey")
        batch.drop_column("parent_id")
