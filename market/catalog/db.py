"""Engines, sessions and the :class:`Catalog` handle.

SQLite is the embedded default and must take writes from several worker processes at once.
Three settings make that safe:

- WAL journal: readers never block the writer, nor the writer the readers;
- a busy timeout: a writer waits for the lock instead of failing at once;
- ``BEGIN IMMEDIATE`` for read-write sessions: the write lock is taken when the transaction
  starts. With a plain (deferred) ``BEGIN`` a transaction that reads and then writes must
  upgrade its lock, and SQLite refuses that upgrade at once ("database is locked", no waiting)
  when another connection has committed in between.

``Catalog.session(read_only=True)`` opens a deferred transaction instead, which never blocks
writers: use it for long reads such as a search worker streaming the accepted specs. On
PostgreSQL it is a real ``READ ONLY`` transaction.

Engines must not cross ``fork()``: build the :class:`Catalog` in each worker process (or call
``engine.dispose(close=False)`` in the child).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from wharf.specification.jsonio import dump_json, load_json

from .errors import CatalogUnavailable
from .repo import ENDED_JOBS

SQLITE_BUSY_TIMEOUT_S = 30.0
_READ_ONLY = "wharf_read_only"
log = logging.getLogger("wharf.catalog")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://…``).

    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    parsed = make_url(url)
    # JSON columns (semantic specs, job requests and results) through orjson: a bulk import
    # writes thousands of them per transaction.
    kwargs.setdefault("json_serializer", dump_json)
    kwargs.setdefault("json_deserializer", load_json)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10, **kwargs.get("connect_args", {})}
    return create_engine(parsed, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see ``_on_begin``): the sqlite3 module's own
        # transaction handling skips BEGIN before SELECTs and SAVEPOINTs. The busy timeout
        # is the ``timeout`` connect argument.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL never corrupts the database; a power cut (not a crash of
            # the process) can lose the last commits. It saves an fsync per transaction.
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the API returns them afterwards)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def _forget_ended_jobs(session: Session) -> None:
    session.info.pop(ENDED_JOBS, None)  # rolled back: they did not end


class Catalog:
    """The catalog database: an engine, its sessions and a readiness probe.

    Examples
    --------
    >>> catalog = Catalog.create("sqlite:///catalog.db")  # migrates to the latest schema
    >>> with catalog.session() as s:
    ...     user = repo.create_user(s, "alice")
    """

    #: Called with the ids of the jobs a transaction ended (:func:`repo.finish_job`,
    #: :func:`repo.fail_job`) once it has committed: workers announce them there to the
    #: requests waiting for them (:mod:`market.jobends`). Its errors are logged, not raised.
    on_jobs_ended: Callable[[list[str]], None] | None = None

    def __init__(self, engine: Engine | str):
        """Use ``engine``, or make one for a URL (without migrating: see :meth:`create`)."""
        self.engine = make_engine(engine) if isinstance(engine, str) else engine
        self.sessions = make_sessionmaker(self.engine)
        self._read_only_sessions = make_sessionmaker(
            self.engine.execution_options(**{_READ_ONLY: True, "postgresql_readonly": True})
        )
        event.listen(self.sessions, "after_commit", self._announce_ended_jobs)
        event.listen(self.sessions, "after_rollback", _forget_ended_jobs)

    def _announce_ended_jobs(self, session: Session) -> None:
        ended = session.info.pop(ENDED_JOBS, None)
        if ended and self.on_jobs_ended is not None:
            try:
                self.on_jobs_ended(sorted(ended))
            except Exception:  # the commit stands; waiting requests find the end themselves
                log.warning("could not announce the end of jobs %s", sorted(ended), exc_info=True)

    @classmethod
    def create(cls, url: str, *, migrate: bool = True, **engine_kwargs: Any) -> Catalog:
        """Open the catalog at ``url``, first migrating it to the latest schema if asked."""
        catalog = cls(make_engine(url, **engine_kwargs))
        if migrate:
            # Through the catalog's own engine, so an in-memory SQLite database works too.
            from .migrations import upgrade

            upgrade(catalog.engine)
        return catalog

    def new_session(self, *, read_only: bool = False) -> Session:
        """A session not yet in a transaction (it begins at the first statement); the caller
        commits or rolls back and closes it. Prefer :meth:`session`."""
        return (self._read_only_sessions if read_only else self.sessions)()

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on an exception.

        Keep transactions short. On SQLite a read-write session holds the database's write
        lock from its first statement to its commit, so never stream a package to or from
        the object store inside one: commit first (the session then starts a new
        transaction on its next statement).
        """
        with self.new_session(read_only=read_only) as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            session.commit()

    def check(self) -> None:
        """Raise :class:`CatalogUnavailable` unless the database answers ``SELECT 1``."""
        try:
            with self.engine.execution_options(**{_READ_ONLY: True}).connect() as connection:
                connection.execute(text("SELECT 1"))
        except DBAPIError as exc:
            url = self.engine.url.render_as_string(hide_password=True)
            raise CatalogUnavailable(
                f"the catalog database {url} does not answer: {exc.orig}"
            ) from exc

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"
