"""Schemathesis against the API's own OpenAPI document: generated requests to every operation,
as an admin, must never get a 500 and every response must match the documented schema."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from wharf.api.app import create_app
from wharf.market.catalog import Catalog, Role, repo
from wharf.market.settings import Settings

# A campaign of hundreds of requests against a whole embedded market, not a unit test.
pytestmark = pytest.mark.services

# Schemathesis makes one test per operation when the module is collected, so the market (an
# embedded one in its own directory) is made here rather than in a fixture.
DATA_DIR = Path(tempfile.mkdtemp(prefix="wharf-fuzz-"))
# No worker runs here, so a generated ?wait=S holds its answer until S is up: cut to 1 s.
SETTINGS = Settings(data_dir=DATA_DIR, rate_limit_enabled=False, job_wait_max_s=1.0)
with Catalog.create(SETTINGS.catalog_url).session() as _s:
    TOKEN, _ = repo.create_token(_s, repo.create_user(_s, "admin", Role.admin).id, "fuzz")
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(SETTINGS))


@pytest.fixture(scope="module", autouse=True)
def _remove_the_market():
    yield
    shutil.rmtree(DATA_DIR, ignore_errors=True)


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None)
def test_no_server_errors_and_responses_match_the_schema(case):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, response_schema_conformance],
    )
