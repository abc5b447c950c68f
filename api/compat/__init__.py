"""The deployed learnware market's HTTP API, under ``/api``, for the reference client.

``LearnwareClient(host="http://HOST:PORT/api")`` of the reference ``learnware`` package talks
to Wharf as it talks to the deployed market: the same paths, form fields and answers, every
answer in the envelope ``{"code", "msg", "data"}`` with code 0 for success. The routes are thin
adapters over what ``/v1`` does (the same catalog, checks, search jobs, rate limits and
problem logging); what the envelope changes is only the shape of the answer. Errors keep
their HTTP status (the reference client reads only the code).
"""

from __future__ import annotations

from fastapi import FastAPI
from wharf.market.settings import Settings

from ..problems import answer_elsewhere
from . import auth, engine, envelope, user

PREFIX = "/api"


def install(app: FastAPI) -> None:
    """Mount the routes at :data:`PREFIX` and answer their errors in the envelope."""
    for module in (auth, user, engine):
        app.include_router(module.router, prefix=PREFIX)
    answer_elsewhere(app, PREFIX, envelope.render)


def body_limits(settings: Settings, overhead: int) -> dict[str, int]:
    """The largest body each route takes (the others take the app's small default):
    ``overhead`` is what a form adds around its file."""
    return {
        f"{PREFIX}{user.CHUNK_PATH}": user.CHUNK_BYTES + overhead,
        f"{PREFIX}{user.UPDATE_PATH}": settings.max_upload_bytes + overhead,
        f"{PREFIX}{user.ADD_PATH}": overhead,
        f"{PREFIX}{engine.SEARCH_PATH}": settings.max_spec_bytes + overhead,
    }
