"""Shared fixtures: real databases (SQLite, PostgreSQL), Redis and a real S3 endpoint (moto
server).

PostgreSQL is expected at ``WHARF_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth); each test gets a fresh
database, dropped afterwards. If the server cannot be reached the PostgreSQL cases *fail*,
unless ``WHARF_TEST_SKIP_POSTGRES=1`` is set: CI runs PostgreSQL, and a silent skip would
hide breakage there. ``-m "not postgres"`` deselects them explicitly.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "WHARF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
S3_TEST_CREDENTIALS = {"access_key_id": "wharf-test", "secret_access_key": "wharf-test-secret"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: needs the PostgreSQL test server")


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
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
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

REDIS_TEST_URL = os.environ.get("WHARF_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


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


@pytest.fixture(params=["local", "s3"])
def object_store(request: pytest.FixtureRequest):
    """Each backend in turn: a :class:`LocalStore`, then an :class:`S3Store` (moto)."""
    return request.getfixturevalue(f"{request.param}_store")
