"""Shared fixtures: real databases (SQLite, PostgreSQL), Redis, a real S3 endpoint (moto
server) and the bubblewrap sandbox.

PostgreSQL is expected at ``WHARF_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth); each test gets a fresh
database, dropped afterwards. If the server cannot be reached the PostgreSQL cases *fail*,
unless ``WHARF_TEST_SKIP_POSTGRES=1`` is set: CI runs PostgreSQL, and a silent skip would
hide breakage there. ``-m "not postgres"`` deselects them explicitly. Redis
(``WHARF_TEST_REDIS_URL``) and bubblewrap follow the same rule (``WHARF_TEST_SKIP_REDIS``,
``WHARF_TEST_SKIP_BWRAP``).

Every test that needs a service or starts processes is marked ``services``, so that
``pytest -m "not services"`` runs the fast unit tests alone: a test that uses one of
:data:`SERVICE_FIXTURES` (directly or through other fixtures) or a service parameter of
``database_url`` or ``object_store`` is marked here; a test that starts a market, worker
processes or Wharf's commands on its own is marked in its module.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "WHARF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
S3_TEST_CREDENTIALS = {"access_key_id": "wharf-test", "secret_access_key": "wharf-test-secret"}


#: Fixtures that reach a service or start one: a test using any of them is marked ``services``.
SERVICE_FIXTURES = frozenset(
    {
        "postgres_admin",
        "postgres_url",
        "redis_url",
        "redis_prefix",
        "redis_database",
        "s3_endpoint",
        "s3_store",
        "bwrap",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL test server")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


# -- databases ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """A libpq URL of the PostgreSQL maintenance database, after checking it answers."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {exc}".strip()
        if os.environ.get("WHARF_TEST_SKIP_POSTGRES") == "1":
            pytest.skip(message)
        pytest.fail(f"{message}\n(set WHARF_TEST_SKIP_POSTGRES=1 to skip these tests)")
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin: str) -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty PostgreSQL database, dropped after the test."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"wharf_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(postgres_admin).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(postgres_admin, autocommit=True) as conn:
            # FORCE ends connections a failed test may have left open (PostgreSQL ≥ 13).
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.services]),
    ],
)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty catalog database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'catalog.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def catalog(database_url: str) -> Iterator:
    """A migrated :class:`market.catalog.Catalog` on each database backend."""
    from wharf.market.catalog import Catalog

    cat = Catalog.create(database_url)
    try:
        yield cat
    finally:
        cat.dispose()


# -- Redis ----------------------------------------------------------------------------------
# Every test reaches Redis through these fixtures: ``redis_url`` (a database tests share, each
# under keys of its own) or ``redis_database`` (a whole database, for what uses fixed key names:
# a Celery broker). No test names a server or a database number of its own.

REDIS_TEST_URL = os.environ.get("WHARF_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
#: How long a claim on a database of its own lasts, should the test run die holding it.
REDIS_CLAIM_S = 3600


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a Redis database for tests, after checking it answers. Like PostgreSQL, an
    unreachable server *fails* these tests unless ``WHARF_TEST_SKIP_REDIS=1`` is set. Tests
    share the database: each keeps to keys of its own (:func:`redis_prefix`)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        message = f"Redis at {REDIS_TEST_URL} is unreachable: {exc}"
        if os.environ.get("WHARF_TEST_SKIP_REDIS") == "1":
            pytest.skip(message)
        pytest.fail(f"{message}\n(set WHARF_TEST_SKIP_REDIS=1 to skip these tests)")
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"wharf-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def redis_database(redis_url: str) -> Callable[[], AbstractContextManager[str]]:
    """Hands out whole Redis databases: ``with redis_database() as url:`` gives the URL of a
    database of the test server that no other test, and no other test run on this server,
    uses meanwhile, empty, and empties it again afterwards. For what keeps fixed key names,
    like a market's Celery broker; from fixtures of any scope.

    The databases are the server's others than ``redis_url``'s and 0 (a developer's own market
    may use that one), each claimed by a key in ``redis_url``'s database.
    """
    import redis
    from redis.connection import parse_url

    base = parse_url(redis_url)
    shared = redis.Redis.from_url(redis_url)
    try:
        count = int(shared.config_get("databases")["databases"])
    except (redis.RedisError, KeyError, ValueError):
        count = 16
    candidates = [n for n in range(1, count) if n != base.get("db", 0)]

    @contextlib.contextmanager
    def claim() -> Iterator[str]:
        token = uuid.uuid4().hex
        for number in candidates:
            key = f"wharf-test:database:{number}"
            if shared.set(key, token, nx=True, ex=REDIS_CLAIM_S):
                break
        else:
            pytest.fail(f"no free Redis test database among {candidates} (all claimed)")
        url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{number}"))
        client = redis.Redis.from_url(url)
        client.flushdb()
        try:
            yield url
        finally:
            client.flushdb()
            client.close()
            if shared.get(key) == token.encode():
                shared.delete(key)

    return claim


# -- the sandbox ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bwrap() -> str:
    """The bubblewrap executable, after checking it builds the sandbox here. Like the servers
    above, a missing or broken bubblewrap *fails* the tests that need it, unless
    ``WHARF_TEST_SKIP_BWRAP=1`` is set."""
    from wharf.sandbox import bubblewrap

    found = bubblewrap.find()
    problem = "bubblewrap (bwrap) is not installed" if found is None else bubblewrap.probe(found)
    if problem is not None:
        message = f"the sandbox cannot run here: {problem}"
        if os.environ.get("WHARF_TEST_SKIP_BWRAP") == "1":
            pytest.skip(message)
        pytest.fail(f"{message}\n(set WHARF_TEST_SKIP_BWRAP=1 to skip these tests)")
    return found


# -- object stores --------------------------------------------------------------------------


@pytest.fixture
def closed_port() -> int:
    """A local TCP port with nothing listening on it (to play a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_credentials() -> dict[str, str]:
    """Keyword arguments for :class:`market.store.S3Store` that the moto server accepts."""
    return dict(S3_TEST_CREDENTIALS)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on this machine (real HTTP); create your own buckets."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_store(s3_endpoint: str):
    """An :class:`market.store.S3Store` on a new bucket of the moto server."""
    from wharf.market.store import S3Store

    return S3Store(
        f"wharf-test-{uuid.uuid4().hex[:12]}",
        endpoint_url=s3_endpoint,
        create_bucket=True,
        **S3_TEST_CREDENTIALS,
    )


@pytest.fixture
def local_store(tmp_path_factory: pytest.TempPathFactory):
    from wharf.market.store import LocalStore

    return LocalStore(tmp_path_factory.mktemp("objects"))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.services)])
def object_store(request: pytest.FixtureRequest):
    """Each backend in turn: a :class:`LocalStore`, then an :class:`S3Store` (moto)."""
    return request.getfixturevalue(f"{request.param}_store")
