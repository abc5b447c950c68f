"""Users have an email: the reference learnware client logs in with an email and a token
(``/api/auth/login_by_token``). Existing users get ``<name>@localhost``, the address a user
created without one has, lower-cased like every stored email.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN and CREATE INDEX: SQLite needs no copy of the table, which the foreign keys
    # that point at users would refuse.
    op.add_column("users", sa.Column("email", sa.String(length=254), nullable=True))
    users = sa.table("users", sa.column("name", sa.String), sa.column("email", sa.String))
    op.execute(users.update().values(email=sa.func.lower(users.c.name + "@localhost")))
    op.create_index(op.f("ix_users_email"), "users", ["email"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_users_email"), table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
