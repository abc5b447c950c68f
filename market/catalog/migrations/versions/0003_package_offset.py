"""Packed packages: a learnware's package may be a byte range of a larger object.

A trusted bulk import keeps its packages inside the uploaded bundle (one object, a pack)
instead of writing one object per learnware; ``package_offset`` says where the package
starts in it (NULL: the whole object is the package). The index on ``package_key`` finds
whether anything still uses a pack before it is removed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("learnwares") as batch:
        batch.add_column(sa.Column("package_offset", sa.BigInteger(), nullable=True))
    op.create_index(op.f("ix_learnwares_package_key"), "learnwares", ["package_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_learnwares_package_key"), table_name="learnwares")
    with op.batch_alter_table("learnwares") as batch:
        batch.drop_column("package_offset")
