"""Learnwares have a ``Model`` tag (Base Model, Fine-tuned Model, PEFT Model or Others: the
reference's 0.4 vocabulary), a filter column like the other tags. Learnwares stored before it
are ``Others``, the value a spec without the key has.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("learnwares", sa.Column("model_type", sa.String(length=64), nullable=True))
    learnwares = sa.table("learnwares", sa.column("model_type", sa.String))
    op.execute(learnwares.update().values(model_type="Others"))
    op.create_index(op.f("ix_learnwares_model_type"), "learnwares", ["model_type"])


def downgrade() -> None:
    op.drop_index(op.f("ix_learnwares_model_type"), table_name="learnwares")
    with op.batch_alter_table("learnwares") as batch:
        batch.drop_column("model_type")
