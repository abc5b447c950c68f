"""Initial schema: users, API tokens, learnwares (with their scenario tags) and jobs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

Self-contained on purpose: a migration must keep creating the schema of its day, whatever
``models.py`` later becomes, so it imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def _time(name: str, *, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id() -> sa.Column:
    # Identity on PostgreSQL; AUTOINCREMENT (sqlite_autoincrement) on SQLite: never reused.
    return sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False)


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", _enum("role", "user", "admin"), nullable=False),
        _time("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        _time("created_at", nullable=False),
        _time("expires_at", nullable=True),
        _time("revoked_at", nullable=True),
        _time("last_used_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_api_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])

    op.create_table(
        "learnwares",
        _id(),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            _enum("learnware_status", "pending", "checking", "accepted", "rejected"),
            nullable=False,
        ),
        sa.Column("semantic_spec", _json(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("data_type", sa.String(64), nullable=True),
        sa.Column("task_type", sa.String(64), nullable=True),
        sa.Column("library", sa.String(64), nullable=True),
        sa.Column("license", sa.String(64), nullable=True),
        sa.Column("scenarios", _json(), nullable=False),
        sa.Column("spec_type", sa.String(64), nullable=True),
        sa.Column("spec_shape", _json(), nullable=True),
        sa.Column("spec_gamma", sa.Double(), nullable=True),
        sa.Column("spec_points", sa.Integer(), nullable=True),
        sa.Column("num_points", sa.Integer(), nullable=True),
        sa.Column("stat_spec", sa.Text(), nullable=True),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("package_key", sa.String(1024), nullable=False),
        sa.Column("package_size", sa.BigInteger(), nullable=False),
        sa.Column("check_log", sa.Text(), nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        _time("checked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_learnwares_owner_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_learnwares")),
        sa.UniqueConstraint("content_sha256", name=op.f("uq_learnwares_content_sha256")),
        sqlite_autoincrement=True,
    )
    for column in ("owner_id", "data_type", "task_type", "library", "license"):
        op.create_index(op.f(f"ix_learnwares_{column}"), "learnwares", [column])
    # Leads with status: also serves every "status = ?" filter.
    op.create_index("ix_learnwares_partition", "learnwares", ["status", "spec_type", "spec_gamma"])

    op.create_table(
        "learnware_scenarios",
        sa.Column("learnware_id", sa.Integer(), nullable=False),
        sa.Column("scenario", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["learnware_id"],
            ["learnwares.id"],
            name=op.f("fk_learnware_scenarios_learnware_id_learnwares"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("learnware_id", "scenario", name=op.f("pk_learnware_scenarios")),
    )
    op.create_index(op.f("ix_learnware_scenarios_scenario"), "learnware_scenarios", ["scenario"])

    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", _enum("job_kind", "check", "search", "index"), nullable=False),
        sa.Column(
            "state",
            _enum("job_state", "queued", "running", "succeeded", "failed"),
            nullable=False,
        ),
        sa.Column("stage", sa.String(200), nullable=True),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("learnware_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("request", _json(), nullable=False),
        sa.Column("result", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("created_at", nullable=False),
        _time("started_at", nullable=True),
        _time("finished_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["learnware_id"],
            ["learnwares.id"],
            name=op.f("fk_jobs_learnware_id_learnwares"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_jobs_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_learnware_lookup", "jobs", ["learnware_id", "kind", "created_at"])
    op.create_index(op.f("ix_jobs_owner_id"), "jobs", ["owner_id"])
    op.create_index(op.f("ix_jobs_state"), "jobs", ["state"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("learnware_scenarios")
    op.drop_table("learnwares")
    op.drop_table("api_tokens")
    op.drop_table("users")
