"""The market catalog: users, API tokens, learnwares and jobs in SQL (SQLite or PostgreSQL).

``Catalog.create(url)`` opens (and migrates) a database; the operations are plain functions
in :mod:`market.catalog.repo` that take a session::

    catalog = Catalog.create(settings.catalog_url)
    with catalog.session() as s:
        lw = repo.create_learnware(s, owner.id, semantic_spec, sha256, key, size)
"""

from . import repo
from .account_tables import WebSession
from .db import Catalog, make_engine, make_sessionmaker
from .errors import (
    CatalogError,
    CatalogUnavailable,
    DuplicateContent,
    EmailTaken,
    LearnwareNotFound,
    NameTaken,
)
from .hetero_tables import HeteroMapVersion, HeteroSpec, MapState
from .migrations import upgrade
from .models import (
    ApiToken,
    Base,
    IndexChange,
    Job,
    JobKind,
    JobState,
    Learnware,
    LearnwareScenario,
    LearnwareStatus,
    Role,
    User,
    UserState,
)
from .repo import format_id, parse_id

__all__ = [
    "ApiToken",
    "Base",
    "Catalog",
    "CatalogError",
    "CatalogUnavailable",
    "DuplicateContent",
    "EmailTaken",
    "HeteroMapVersion",
    "HeteroSpec",
    "IndexChange",
    "Job",
    "JobKind",
    "JobState",
    "Learnware",
    "LearnwareNotFound",
    "LearnwareScenario",
    "LearnwareStatus",
    "MapState",
    "NameTaken",
    "Role",
    "User",
    "UserState",
    "WebSession",
    "format_id",
    "make_engine",
    "make_sessionmaker",
    "parse_id",
    "repo",
    "upgrade",
]
