"""``WHARF_ENV=production``: settings only fit for a trial stop every process at start, with
one message listing every problem."""

import subprocess
import sys

import pytest
from pydantic import ValidationError
from wharf.market.settings import Settings

GOOD = {
    "env": "production",
    "database_url": "postgresql+psycopg://wharf:Xk93-long-random@db:5432/wharf",
    "broker_url": "redis://:Jq81-long-random@redis:6379/0",
    "store": "s3",
    "s3_access_key_id": "wharf-api",
    "s3_secret_access_key": "Zr27-long-random-secret",
}


def problems(**overrides) -> str:
    with pytest.raises(ValidationError) as err:
        Settings(**{**GOOD, **overrides})
    return str(err.value)


def test_a_proper_production_configuration_starts():
    settings = Settings(**GOOD)
    assert settings.production_problems() == []
    assert settings.rate_limit_redis == GOOD["broker_url"]  # rate limits share the broker
    amqp = {**GOOD, "broker_url": "amqp://wharf:Jq81-long-random@rabbit//"}
    Settings(**amqp, rate_limit_redis_url="redis://:Jq81-long-random@redis:6379/1")


def test_every_problem_is_listed_at_once():
    text = problems(
        database_url=None,
        broker_url=None,
        store="local",
        s3_access_key_id=None,
        s3_secret_access_key="minioadmin",
        allow_unsandboxed=True,
        sandbox="none",
        rate_limit_enabled=False,
    )
    for phrase in (
        "WHARF_ENV=production",
        "WHARF_DATABASE_URL must name a PostgreSQL database",
        "WHARF_BROKER_URL must be a network broker (redis://, amqp://…), not the embedded",
        "WHARF_STORE must be s3",
        "WHARF_S3_ACCESS_KEY_ID is not set",
        "WHARF_S3_SECRET_ACCESS_KEY is a well-known default credential",
        "WHARF_ALLOW_UNSANDBOXED is on",
        "WHARF_SANDBOX=none",
        "WHARF_RATE_LIMIT_ENABLED is off",
    ):
        assert phrase in text, phrase
    assert text.count("\n  - ") == 8
    # the same settings are fine for a trial
    Settings(**{**GOOD, "env": "development", "database_url": None, "store": "local"})


def test_sqlite_and_the_file_broker_are_refused():
    assert "not the embedded SQLite" in problems(database_url="sqlite:////var/lib/wharf/c.db")
    assert "not filesystem://" in problems(broker_url="filesystem://")
    assert "not memory://" in problems(broker_url="memory://")


@pytest.mark.parametrize("value", ["minioadmin", "MinioAdmin", " test ", "testing", "minio123"])
def test_well_known_credentials_are_refused(value):
    assert "WHARF_S3_ACCESS_KEY_ID is a well-known" in problems(s3_access_key_id=value)
    assert "WHARF_S3_SECRET_ACCESS_KEY is a well-known" in problems(s3_secret_access_key=value)


def test_well_known_passwords_in_service_urls_are_refused():
    text = problems(
        database_url="postgresql+psycopg://postgres:postgres@db/wharf",
        broker_url="redis://:password@redis:6379/0",
    )
    assert "WHARF_DATABASE_URL holds a well-known password" in text
    assert "WHARF_BROKER_URL holds a well-known password" in text
    assert "postgres:postgres" not in text and ":password@" not in text  # never echoed


def test_rate_limits_need_a_redis_every_api_process_shares():
    text = problems(broker_url="amqp://wharf:Jq81-long-random@rabbit//")
    assert "set WHARF_RATE_LIMIT_REDIS_URL" in text
    assert text.count("\n  - ") == 1


def test_production_supersedes_require_services():
    text = problems(require_services=True, database_url=None, store="local")
    assert "WHARF_DATABASE_URL must name" in text and "WHARF_STORE must be s3" in text


UNFIT_FOR_PRODUCTION = {
    "PATH": "/usr/bin:/bin",
    "WHARF_ENV": "production",
    "WHARF_S3_ACCESS_KEY_ID": "minioadmin",
    "WHARF_S3_SECRET_ACCESS_KEY": "a-real-secret-never-to-print",
}


@pytest.mark.services
@pytest.mark.parametrize(
    "command",
    [
        ["-c", "from wharf.api.main import create_app; create_app()"],
        ["-m", "celery", "-A", "wharf.workers.tasks", "worker", "-Q", "search"],
    ],
    ids=["api", "worker"],
)
def test_api_and_workers_refuse_to_start(command, tmp_path):
    env = {**UNFIT_FOR_PRODUCTION, "WHARF_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "WHARF_ENV=production" in done.stderr
    for name in ("WHARF_DATABASE_URL", "WHARF_BROKER_URL", "WHARF_STORE", "WHARF_S3_ACCESS"):
        assert name in done.stderr, name
    assert "a-real-secret-never-to-print" not in done.stderr
    assert not list(tmp_path.iterdir())  # nothing embedded was created


@pytest.mark.services
def test_importing_the_api_and_the_workers_reads_no_settings(tmp_path):
    """The applications are made by factories: importing their modules reads no settings
    (so unfit ones do not fail it), makes no folder and connects to nothing."""
    env = {**UNFIT_FOR_PRODUCTION, "WHARF_DATA_DIR": str(tmp_path)}
    code = (
        "import wharf.api.main, wharf.workers.app, wharf.workers.tasks\n"
        "from wharf.market.settings import get_settings\n"
        "assert get_settings.cache_info().misses == 0\n"
        "assert not wharf.workers.app.app.configured"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.iterdir())
