"""Alembic migrations, run from code: no ``alembic.ini`` is needed, so an installed package
can migrate its own database (``upgrade(url)``).

To write a new revision after changing ``models.py``::

    python -c "from wharf.market.catalog.migrations import config; from alembic import command; \\
        command.revision(config('sqlite:///scratch.db'), 'what changed', autogenerate=True)"

against a database already at the previous head, then read and tidy the generated script.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent


def config(url: str | None = None) -> Config:
    """An Alembic configuration pointing at this folder (and at ``url``, if given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Migrate the database at ``target`` (a URL or an engine) to ``revision``.

    Safe to run from several processes at once: the migration holds SQLite's write lock
    (``BEGIN IMMEDIATE``) or a PostgreSQL advisory lock for its whole transaction.
    """
    from ..db import make_engine

    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.begin() as connection:
            cfg = config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()
