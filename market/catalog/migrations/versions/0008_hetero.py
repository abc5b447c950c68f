"""The heterogeneous market: map versions and each learnware's spec under a version.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Self-contained, like every migration: it imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "hetero_maps",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "training",
                "computing",
                "ready",
                "failed",
                name="hetero_map_state",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=True),
        sa.Column("learnwares", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("info", _JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_hetero_maps")),
    )
    op.create_index(op.f("ix_hetero_maps_state"), "hetero_maps", ["state"])
    op.create_table(
        "hetero_specs",
        sa.Column("learnware_id", sa.Integer(), nullable=False),
        sa.Column("map_version", sa.Integer(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["learnware_id"],
            ["learnwares.id"],
            name=op.f("fk_hetero_specs_learnware_id_learnwares"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["map_version"],
            ["hetero_maps.version"],
            name=op.f("fk_hetero_specs_map_version_hetero_maps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("learnware_id", "map_version", name=op.f("pk_hetero_specs")),
    )
    op.create_index("ix_hetero_specs_map_version", "hetero_specs", ["map_version", "learnware_id"])


def downgrade() -> None:
    op.drop_index("ix_hetero_specs_map_version", table_name="hetero_specs")
    op.drop_table("hetero_specs")
    op.drop_index(op.f("ix_hetero_maps_state"), table_name="hetero_maps")
    op.drop_table("hetero_maps")
