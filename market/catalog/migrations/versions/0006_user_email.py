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
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(length=254), nullable=True))
    users = sa.table("users", sa.column("name", sa.String), sa.column("email", sa.String))
    op.execute(users.update().values(email=sa.func.lower(users.c.name + "@localhost")))
    with op.batch_alter_table("users") as batch:
        batch.create_unique_constraint(op.f("uq_users_email"), ["email"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("uq_users_email"), type_="unique")
        batch.drop_column("email")
